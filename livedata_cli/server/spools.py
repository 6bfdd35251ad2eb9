"""Where the parts of a resumable upload wait until it is committed, and the rows that track them.

Two kinds of spool, chosen by the blob store:

* **Folder store** (the embedded default): one spool file per upload,
  ``LIVEDATA_HOME/server/uploads/<id>.part``.  Every part of an upload must
  reach the machine that holds that folder, so a folder-store server is one
  instance (with any number of ``--workers``).
* **S3 store** (``--store s3://…``): nothing stays on the instance between
  requests.  The parts go into one S3 multipart upload at
  ``tmp/uploads/<id>/spool`` whose part list (number, ETag, size) is kept in
  ``upload_parts``.  S3 takes parts of at least 5 MiB (all but the last), so a
  request whose bytes (with those still pending) come to less than the part
  target leaves them in a small pending object,
  ``tmp/uploads/<id>/pending-<offset>``, named by where it ends so that a new
  one never overwrites the one the database points to; the next part starts
  with them.  The target grows with the part count (5 MiB for the first
  thousand parts, 10 MiB for the next, …) so that S3's 10,000 parts hold
  about 275 GB.  While a request runs, its bytes wait in an unnamed
  temporary file (gone even after ``kill -9``).  Any instance can take any
  part, the commit, or the drop.

Each upload row also carries what makes the parts safe to send in parallel
and the quota hold up:

* ``claim``/``claim_until``: a part (or the commit) is written only by the
  request that took the claim in one write transaction, after checking the
  offset; a second request at the same offset is a 409 at once.  The lease
  is renewed while bytes flow, so a killed server's claim lapses by itself.
* ``held``: the bytes the upload counts against the owner's quota: what the
  spool holds, plus the rest of the part being written.  Stored bytes plus
  the ``held`` of every open upload never pass the quota
  (:func:`lock_account` serialises the checks per account on PostgreSQL;
  SQLite's write transactions are serial already).
* ``last_active``: an upload nobody touched for ``--upload-idle-timeout``
  seconds is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeGuard

import sqlalchemy as sa
from anyio import to_thread
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.config import default_dir
from livedata_cli.server.db import AnyRow, upload_parts, uploads
from livedata_cli.stores import ObjectStore

if TYPE_CHECKING:
    from livedata_cli.server.deps import Context
    from livedata_cli.stores.s3 import S3Store

log = logging.getLogger("livedata.server")

READ = 256 * 1024
MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's smallest part, except the last
MAX_PART = 64 * MIB  # a part is sent once the request's bytes reach this, so a request's file stays bounded
MAX_PARTS = 10_000

# -- the quota -----------------------------------------------------------------------


def lock_account(conn: Connection, user_id: str) -> tuple[int, int]:
    """Take the account row for this transaction (PostgreSQL ``FOR UPDATE``); its quota and used bytes."""
    quota, used = conn.execute(
        sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user_id).with_for_update()
    ).one()
    return int(quota), int(used)


def held_bytes(conn: Connection, user_id: str, *, besides: str | None = None) -> int:
    """The bytes the account's open uploads hold (all but ``besides``)."""
    q = sa.select(sa.func.coalesce(sa.func.sum(uploads.c.held), 0)).where(uploads.c.owner_id == user_id)
    if besides is not None:
        q = q.where(uploads.c.id != besides)
    return int(conn.execute(q).scalar_one())


# -- spool kinds ------------------------------------------------------------------------


def is_s3(store: ObjectStore) -> TypeGuard[S3Store]:
    """An S3 store: uploads spool as its multipart uploads (through the S3 store's own calls)."""
    s3 = sys.modules.get("livedata_cli.stores.s3")  # loaded by open_store() for an S3 store, only then
    return s3 is not None and isinstance(store, s3.S3Store)


def local_path(upload_id: str) -> Path:
    return default_dir() / "uploads" / f"{upload_id}.part"


def _prefix(upload_id: str) -> str:
    return f"tmp/uploads/{upload_id}"


def spool_key(upload_id: str) -> str:
    return f"{_prefix(upload_id)}/spool"


def pending_key(upload_id: str, end: int) -> str:
    return f"{_prefix(upload_id)}/pending-{end}"


def part_target(number: int) -> int:
    """Bytes a part should reach before it goes to S3: 5 MiB, then 5 MiB more every thousand parts."""
    return MIN_PART * (1 + (number - 1) // 1000)


def create(store: ObjectStore, upload_id: str) -> None:
    if is_s3(store):
        return  # nothing until the first part
    path = local_path(upload_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)


class SpoolMissing(Exception):
    """This host does not hold the upload's spool file (a folder store keeps it on the host that opened it)."""


class LocalSink:
    """Writes one part into a spool file at its offset (after cutting away what no row counts)."""

    def __init__(self, row: AnyRow, first: int) -> None:
        try:
            self.fd = os.open(local_path(row.id), os.O_WRONLY)
        except FileNotFoundError:
            raise SpoolMissing() from None
        os.ftruncate(self.fd, first)  # bytes a killed request wrote past the offset
        self.pos = first

    async def write(self, chunk: bytes) -> None:
        await to_thread.run_sync(os.pwrite, self.fd, chunk, self.pos)
        self.pos += len(chunk)

    async def finish(self) -> None:
        os.close(self.fd)
        self.fd = -1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def record(self, conn: Connection) -> None:
        """Nothing but the offset, which the caller writes."""

    def after_commit(self, committed: bool) -> None:
        """Nothing to clean."""


class S3Sink:
    """Sends one request's bytes as S3 parts of the upload, the rest as its pending object."""

    def __init__(self, store: S3Store, row: AnyRow, first: int, next_number: int) -> None:
        self.store = store
        self.row = row
        self.pos = first
        self.number = next_number
        self.mp_id: str | None = row.mp_id
        self.parts: list[dict[str, Any]] = []
        self.pending = 0
        self.old_pending = pending_key(row.id, first) if row.pending else None
        self.new_pending: str | None = None
        self.buf: BinaryIO = tempfile.TemporaryFile(dir=_tmp_dir())  # noqa: SIM115 (closed in close())
        if self.old_pending is not None:
            with store.open(self.old_pending) as f:
                while chunk := f.read(READ):
                    self.buf.write(chunk)

    def _send_part(self) -> None:
        size = self.buf.tell()
        if self.number > MAX_PARTS:
            raise OverflowError("the upload has more parts than S3 allows")
        if self.mp_id is None:
            up = self.store._call(
                "create_multipart_upload", spool_key(self.row.id), Key=self.store._key(spool_key(self.row.id)),
                **self.store.sse(),
            )
            self.mp_id = str(up["UploadId"])
        self.buf.seek(0)
        r = self.store._call(
            "upload_part", spool_key(self.row.id), Key=self.store._key(spool_key(self.row.id)), UploadId=self.mp_id,
            PartNumber=self.number, Body=self.buf, ContentLength=size,  # the file holds this part alone
        )
        self.parts.append({"upload_id": self.row.id, "number": self.number, "etag": str(r["ETag"]), "size": size})
        self.number += 1
        self.buf.seek(0)
        self.buf.truncate()

    async def write(self, chunk: bytes) -> None:
        await to_thread.run_sync(self.buf.write, chunk)
        self.pos += len(chunk)
        if self.buf.tell() >= max(MAX_PART, part_target(self.number)):
            await to_thread.run_sync(self._send_part)

    async def finish(self) -> None:
        def run() -> None:
            size = self.buf.tell()
            if size >= part_target(self.number):
                self._send_part()
            elif size:
                self.buf.seek(0)
                self.new_pending = pending_key(self.row.id, self.pos)
                with self.store.writer(self.new_pending) as out:
                    while chunk := self.buf.read(READ):
                        out.write(chunk)
                self.pending = size

        await to_thread.run_sync(run)

    def close(self) -> None:
        self.buf.close()

    def record(self, conn: Connection) -> None:
        if self.parts:
            conn.execute(upload_parts.insert(), self.parts)
        conn.execute(uploads.update().where(uploads.c.id == self.row.id).values(mp_id=self.mp_id, pending=self.pending))

    def after_commit(self, committed: bool) -> None:
        """Delete the pending object the database no longer names (never the one it does)."""
        stale, named = (self.old_pending, self.new_pending) if committed else (self.new_pending, self.old_pending)
        if stale is not None and stale != named:
            with contextlib.suppress(Exception):
                self.store.delete(stale)


def _tmp_dir() -> str | None:
    folder = default_dir() / "tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return str(folder)


def sink(c: Context, conn: Connection, row: AnyRow, first: int) -> LocalSink | S3Sink:
    """Where one part's bytes go (read ``conn`` for the S3 part count)."""
    if not is_s3(c.store):
        return LocalSink(row, first)
    last = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(upload_parts.c.number), 0)).where(upload_parts.c.upload_id == row.id)
    ).scalar_one()
    return S3Sink(c.store, row, first, int(last) + 1)


# -- committing -------------------------------------------------------------------------------


def assemble(c: Context, row: AnyRow) -> bool:
    """S3: make the parts one object (the pending bytes as the last part); True when anything changed."""
    if not is_s3(c.store) or row.assembled or row.mp_id is None:
        return False
    store = c.store
    with c.db.read() as conn:
        parts = conn.execute(
            sa.select(upload_parts).where(upload_parts.c.upload_id == row.id).order_by(upload_parts.c.number)
        ).all()
    listed = [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
    if row.pending:
        data = store.get_bytes(pending_key(row.id, row.received))
        number = (parts[-1].number if parts else 0) + 1
        r = store._call(
            "upload_part", spool_key(row.id), Key=store._key(spool_key(row.id)), UploadId=row.mp_id,
            PartNumber=number, Body=data,
        )
        listed.append({"PartNumber": number, "ETag": str(r["ETag"])})
    store._call(
        "complete_multipart_upload", spool_key(row.id), Key=store._key(spool_key(row.id)), UploadId=row.mp_id,
        MultipartUpload={"Parts": listed},
    )
    with c.db.write() as conn:
        conn.execute(uploads.update().where(uploads.c.id == row.id).values(assembled=True, mp_id=None))
    if row.pending:
        store.delete(pending_key(row.id, row.received))
    return True


async def read(c: Context, row: AnyRow) -> AsyncIterator[bytes]:
    """The ``received`` bytes of an upload (S3: after :func:`assemble`)."""
    left = int(row.received)
    if left == 0:
        return
    if not is_s3(c.store):
        f: BinaryIO = open(local_path(row.id), "rb")  # noqa: SIM115 (closed below)
    elif row.assembled or row.mp_id is not None:
        f = c.store.open(spool_key(row.id))
    else:
        f = c.store.open(pending_key(row.id, row.received))
    try:
        while left > 0:
            chunk = await to_thread.run_sync(f.read, min(READ, left))
            if not chunk:
                raise OSError(f"the spool of upload {row.id} is {row.received - left} bytes, not {row.received}")
            left -= len(chunk)
            yield chunk
    finally:
        f.close()


# -- dropping ----------------------------------------------------------------------------------


def discard(store: ObjectStore, upload_id: str) -> None:
    """Remove whatever an upload left in its spool (its row is gone or going)."""
    if not is_s3(store):
        local_path(upload_id).unlink(missing_ok=True)
        return
    s3 = store
    prefix = _prefix(upload_id)
    for key in list(s3.list(prefix)):
        s3.delete(key)
    for key, mp_id, _started in list(s3.list_uploads(prefix)):
        s3.abort_upload(key, mp_id)


def sweep(store: ObjectStore, database: db.Database) -> int:
    """At start: remove the spools no upload row owns (left by a killed server); how many."""
    with database.read() as conn:
        live = set(conn.scalars(sa.select(uploads.c.id)))
    gone = 0
    if is_s3(store):
        s3 = store
        seen: set[str] = set()
        for key in s3.list("tmp/uploads"):
            seen.add(key.split("/")[2])
        for key, _mp, _t in s3.list_uploads("tmp/uploads"):
            seen.add(key.split("/")[2])
        for upload_id in seen - live:
            discard(store, upload_id)
            gone += 1
        return gone
    folder = local_path("x").parent
    for path in folder.glob("*.part") if folder.is_dir() else []:
        if path.name.removesuffix(".part") not in live:
            path.unlink(missing_ok=True)
            gone += 1
    return gone
