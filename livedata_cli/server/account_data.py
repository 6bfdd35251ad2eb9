"""``/api/v1/users/me/export`` and ``/users/me/delete``: take everything the server holds, or erase it.

Export is one streamed zip, built while it is sent: the server walks the
account's rows page by page and its blobs segment by segment, and a small
write-only sink hands each piece to the response as ``zipfile`` writes it
(entries carry data descriptors, so nothing is ever seeked or held whole).
Memory stays at one server segment (256 KiB) whatever the account's size.
One request rather than a manifest plus a download per blob because the
client then needs nothing but a file to write to, one audit record covers
the export, and there is no second consistency question between a manifest
and the blobs fetched later.  A broken stream lacks the zip's central
directory, so the client can tell a whole export from a cut one.

Layout of the zip:

``manifest.json``
    last entry: format, counts, and how to restore.
``account.json``, ``sessions.json``, ``files.json``, ``shares.json``, ``audit.json``
    the profile (no password hash, no MFA secret), the sessions (devices),
    every file's metadata (with where its bytes are in the zip), the shares
    (no password verifier) and the account's audit records.
``store/``
    the account's live files laid out exactly as a folder store
    (``stores/local.py``): a vault kept in the account is a vault again after
    ``unzip`` and ``livedata init --store DIR/store``.
``trash/<file id>``, ``other/<file id>``
    files in the trash, and files whose names are not store keys (or an
    older file of a name that a newer one replaced).

The bytes are the client's ciphertext: the server removes only its own
encryption layer, so the export is as unreadable without the vault
passphrase as the account was.

Delete erases the account after a fresh password (and TOTP or recovery code
when MFA is on): its shares first (the links die at once), then the files in
batches, each batch's blobs before its rows, then every other row that names
the account, in one transaction.  A crash in between leaves an account with
fewer files, and deleting again finishes the job; never a blob that nothing
points to.  What stays is one audit record, ``account.delete``, with a random
deletion id and no email, IP or user agent; administrators' records about the
account keep that id in place of the account's.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from livedata_cli.server import db, files, reauth, shares, uploads
from livedata_cli.server.blobs import read_range
from livedata_cli.server.db import AnyRow, public_keys, share_recipients
from livedata_cli.server.deps import ClientDep, Context, CtxDep, UserDep, audit
from livedata_cli.server.security import new_id
from livedata_cli.stores import check_key
from livedata_cli.stores.local import key_path

router = APIRouter(prefix="/users", tags=["users"])

FORMAT = "livedata-account-export"
STORE_DIR = "store"
PAGE = 500
FLUSH = 256 * 1024
# Session columns worth exporting, where the database has them (006_devices adds most);
# trust_hash is left out: it stands for a secret.
SESSION_FIELDS = (
    "id",
    "created_at",
    "revoked_at",
    "revoked_reason",
    "device_name",
    "user_agent",
    "ip",
    "last_seen_at",
    "last_ip",
    "trusted_until",
)


# -- export -----------------------------------------------------------------------------
class _Sink:
    """A write-only file for ``zipfile``: no ``seek``, so it writes data descriptors; ``take`` empties it."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def pending(self) -> int:
        return len(self._buf)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _paged(c: Context, query: sa.Select[Any], *keys: Any) -> Iterator[AnyRow]:
    """Rows of ``query`` in ``keys`` order, a page per short read transaction (keyset paging)."""
    last: tuple[Any, ...] | None = None
    while True:
        q = query.order_by(*keys).limit(PAGE)
        if last is not None:
            q = q.where(sa.tuple_(*keys) > sa.tuple_(*last))
        with c.db.read() as conn:
            rows = conn.execute(q).all()
        yield from rows
        if len(rows) < PAGE:
            return
        last = tuple(getattr(rows[-1], k.key) for k in keys)


def _is_key(name: str) -> bool:
    try:
        check_key(name)
    except ValueError:
        return False
    return name != "tmp" and not name.startswith("tmp/")


def _layout(c: Context, user_id: str) -> Iterator[tuple[Any, str]]:
    """Each file of the account and its path in the zip.

    Live files come by name, so that the files of one name are side by side:
    the newest is the store object, older ones (an overwrite in flight) go
    to ``other/``.
    """
    f = db.files.c
    live = sa.select(db.files).where(f.owner_id == user_id, f.deleted_at.is_(None))
    group: list[AnyRow] = []

    def place(rows: list[AnyRow]) -> Iterator[tuple[AnyRow, str]]:
        newest = max(rows, key=lambda r: (r.created_at, r.id))
        for r in rows:
            ok = r is newest and _is_key(r.file_name)
            yield r, f"{STORE_DIR}/{key_path(r.file_name)}" if ok else f"other/{r.id}"

    for row in _paged(c, live, f.file_name, f.id):
        if group and row.file_name != group[0].file_name:
            yield from place(group)
            group = []
        group.append(row)
    if group:
        yield from place(group)
    trashed = sa.select(db.files).where(f.owner_id == user_id, f.deleted_at.is_not(None))
    for row in _paged(c, trashed, f.id):
        yield row, f"trash/{row.id}"


def _batched(items: Iterable[tuple[AnyRow, str]], n: int) -> Iterator[list[tuple[AnyRow, str]]]:
    batch: list[tuple[AnyRow, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _json_array(items: Iterable[Any]) -> Iterator[bytes]:
    """A JSON array, one item per line, written as the items come."""
    yield b"[\n"
    first = True
    for item in items:
        yield (b"" if first else b",\n") + json.dumps(item, default=str).encode()
        first = False
    yield b"\n]\n"


def _file_docs(c: Context, user_id: str) -> Iterator[dict[str, Any]]:
    for batch in _batched(_layout(c, user_id), PAGE):
        with c.db.read() as conn:
            tags = files._tags(conn, [r.id for r, _ in batch])
        for row, path in batch:
            yield {**files._out(row, tags[row.id]).model_dump(), "path": path}


def _share_docs(c: Context, user_id: str) -> Iterator[dict[str, Any]]:
    s = db.shares.c
    for row in _paged(c, sa.select(db.shares).where(s.owner_id == user_id), s.id):
        yield {**shares._out(row, c).model_dump(), "revoked_at": row.revoked_at}


def _audit_docs(c: Context, user_id: str) -> Iterator[dict[str, Any]]:
    a = db.audit_logs.c
    cols = (
        a.id,
        a.action,
        a.object_type,
        a.object_id,
        a.ip,
        a.user_agent,
        a.request_id,
        a.status,
        a.created_at,
    )
    for row in _paged(c, sa.select(*cols).where(a.user_id == user_id), a.id):
        yield dict(row._mapping)


def _session_docs(c: Context, user_id: str) -> list[dict[str, Any]]:
    with c.db.read() as conn:
        have = {col["name"] for col in sa.inspect(conn).get_columns("sessions")}
        t = sa.table(
            "sessions", sa.column("user_id"), *(sa.column(n) for n in SESSION_FIELDS if n in have)
        )
        rows = conn.execute(
            sa.select(*(t.c[n] for n in SESSION_FIELDS if n in have)).where(t.c.user_id == user_id)
        ).all()
    return [dict(r._mapping) for r in rows]


def _profile(c: Context, user_id: str) -> dict[str, Any]:
    with c.db.read() as conn:
        u = conn.execute(sa.select(db.users).where(db.users.c.id == user_id)).one()
        key = conn.execute(
            sa.select(public_keys.c.public_key).where(public_keys.c.user_id == user_id)
        ).scalar()
    return {
        "id": u.id,
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "role": "admin" if u.is_admin else "user",
        "mfa_enabled": bool(u.mfa_enabled),
        "quota_bytes": u.quota_bytes,
        "used_bytes": u.used_bytes,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
        "disabled_at": u.disabled_at,
        "public_key": key,
    }


def export_stream(c: Context, user_id: str) -> Iterator[bytes]:
    """The account as a zip, in pieces of about ``FLUSH`` bytes."""
    sink = _Sink()
    stamp = time.localtime()[:6]
    counts = {"files": 0, "blobs": 0, "bytes": 0, "shares": 0, "audit": 0, "sessions": 0}

    def counted(items: Iterable[Any], what: str) -> Iterator[Any]:
        for item in items:
            counts[what] += 1
            yield item

    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:

        def entry(
            name: str, chunks: Iterable[bytes], *, size: int | None = None
        ) -> Iterator[bytes]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o600 << 16
            if size is None:
                info.compress_type = zipfile.ZIP_DEFLATED
            else:
                info.file_size = size  # decides zip64 up front
            with zf.open(info, "w", force_zip64=size is None) as w:
                for chunk in chunks:
                    w.write(chunk)
                    if sink.pending() >= FLUSH:
                        yield sink.take()
            yield sink.take()

        def doc(value: Any) -> list[bytes]:
            return [json.dumps(value, indent=1, default=str).encode() + b"\n"]

        yield from entry("account.json", doc(_profile(c, user_id)))
        sessions = _session_docs(c, user_id)
        counts["sessions"] = len(sessions)
        yield from entry("sessions.json", doc(sessions))
        yield from entry("files.json", _json_array(counted(_file_docs(c, user_id), "files")))
        yield from entry("shares.json", _json_array(counted(_share_docs(c, user_id), "shares")))
        yield from entry("audit.json", _json_array(counted(_audit_docs(c, user_id), "audit")))
        for row, path in _layout(c, user_id):
            body = read_range(c.store, c.keys, row, 0, row.size - 1) if row.size else iter(())
            yield from entry(path, body, size=row.size)
            counts["blobs"] += 1
            counts["bytes"] += row.size
        manifest = {
            "format": FORMAT,
            "version": 1,
            "server": c.config.public_url,
            "account_id": user_id,
            "exported_at": time.time(),
            "store": f"{STORE_DIR}/",
            "counts": counts,
            "restore": f"unzip this file -d DIR; livedata init --store DIR/{STORE_DIR}; livedata download PATH",
        }
        yield from entry("manifest.json", doc(manifest))
    yield sink.take()


@router.get(
    "/me/export",
    summary="Everything the server holds about your account, as a streamed zip",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export(c: CtxDep, user: UserDep, who: ClientDep) -> StreamingResponse:
    with c.db.write() as conn:
        audit(conn, who, user.id, "account.export", "user", user.id)
    return StreamingResponse(
        export_stream(c, user.id),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="livedata-export.zip"'},
    )


# -- delete -----------------------------------------------------------------------------
class DeleteBody(BaseModel):
    password: Annotated[str, Field(max_length=1024)]
    code: Annotated[str | None, Field(max_length=16, description="a TOTP code, when MFA is on")] = (
        None
    )
    recovery_code: Annotated[str | None, Field(max_length=64, description="or a recovery code")] = (
        None
    )


class Erased(BaseModel):
    deletion_id: str
    files: int
    blobs: int
    bytes: int
    shares: int
    sessions: int


# Columns by which a table names an account; every table that has one is swept, so
# tables added later are erased too.
OWNER_COLUMNS = ("user_id", "owner_id", "recipient_id")


def erase_account(c: Context, user_id: str, request_id: str = "") -> Erased:
    """Erase the account: its share links first, then blobs and file rows in batches, then every
    row naming it; one anonymous audit record stays."""
    f = db.files.c
    own_shares = sa.select(db.shares.c.id).where(db.shares.c.owner_id == user_id)
    with c.db.write() as conn:
        shares_n = conn.execute(
            sa.select(sa.func.count()).select_from(own_shares.subquery())
        ).scalar_one()
        sessions_n = conn.execute(
            sa.select(sa.func.count())
            .select_from(db.sessions)
            .where(db.sessions.c.user_id == user_id)
        ).scalar_one()
        conn.execute(
            share_recipients.delete().where(
                share_recipients.c.share_id.in_(own_shares)
            )
        )
        conn.execute(db.shares.delete().where(db.shares.c.owner_id == user_id))
    erased = Erased(
        deletion_id=new_id(), files=0, blobs=0, bytes=0, shares=shares_n, sessions=sessions_n
    )

    def drop(conn: Connection, rows: list[AnyRow]) -> None:
        ids = [r.id for r in rows]
        conn.execute(db.file_tags.delete().where(db.file_tags.c.file_id.in_(ids)))
        conn.execute(db.files.delete().where(f.id.in_(ids)))  # conversions of them go by cascade
        erased.files += len(rows)
        erased.blobs += len(rows)
        erased.bytes += sum(r.size for r in rows)

    while True:
        with c.db.read() as conn:
            rows = conn.execute(
                sa.select(f.id, f.blob_key, f.size)
                .where(f.owner_id == user_id)
                .order_by(f.id)
                .limit(PAGE)
            ).all()
        if not rows:
            break
        for row in rows:
            c.store.delete(row.blob_key)
        with c.db.write() as conn:
            drop(conn, list(rows))
    with c.db.write() as conn:
        late = list(
            conn.execute(sa.select(f.id, f.blob_key, f.size).where(f.owner_id == user_id)).all()
        )
        if late:  # uploaded while the batches above ran: their blobs go after the commit
            drop(conn, late)
        upload_ids = list(
            conn.scalars(
                sa.select(db.uploads.c.id).where(db.uploads.c.owner_id == user_id)
            )
        )
        own_sessions = sa.select(db.sessions.c.id).where(db.sessions.c.user_id == user_id)
        conn.execute(
            db.refresh_tokens.delete().where(db.refresh_tokens.c.session_id.in_(own_sessions))
        )
        conn.execute(
            share_recipients.delete().where(
                share_recipients.c.share_id.in_(own_shares)
            )
        )
        inspector = sa.inspect(conn)
        for name in inspector.get_table_names():
            have = {col["name"] for col in inspector.get_columns(name)}
            for col in OWNER_COLUMNS:
                if name != "users" and col in have:
                    t = sa.table(name, sa.column(col))
                    conn.execute(t.delete().where(t.c[col] == user_id))
        a = db.audit_logs.c
        conn.execute(
            db.audit_logs.update()
            .where(a.object_id == user_id)
            .values(object_id=erased.deletion_id)
        )
        conn.execute(db.users.delete().where(db.users.c.id == user_id))
        conn.execute(
            db.audit_logs.insert().values(
                user_id=None,
                action="account.delete",
                object_type="user",
                object_id=erased.deletion_id,
                ip=None,
                user_agent=None,
                request_id=request_id[:64],
                status="ok",
                created_at=time.time(),
            )
        )
    for row in late:
        c.store.delete(row.blob_key)
    uploads.discard_all(c, upload_ids)
    c.db.scrub()  # nothing of the account may stay readable in the SQLite WAL
    return erased


@router.post(
    "/me/delete",
    response_model=Erased,
    summary="Delete your account and everything in it, for good (password, and a code with MFA)",
    responses={
        403: {"description": "wrong password or code"},
        429: {"description": "rate limited"},
    },
)
def delete_me(body: DeleteBody, c: CtxDep, user: UserDep, who: ClientDep) -> Erased:
    reauth.confirm(
        c, who, user.id, user.email, "account.delete",
        password=body.password, code=body.code, recovery_code=body.recovery_code, refused="nothing was deleted",
    )
    return erase_account(c, user.id, who.request_id)
