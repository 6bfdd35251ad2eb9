"""``/api/v1/files/uploads``: resumable uploads, sent in parts and committed once whole.

``POST /files/uploads`` opens one (the same query parameters as ``POST
/files``, plus an optional declared ``size``); each ``PUT
/files/uploads/{id}`` with ``Content-Range: bytes a-b/total`` (``total`` may
be ``*`` until the size is known) appends its body at offset ``a``, which must
be the number of bytes the server holds; ``GET /files/uploads/{id}`` says that
number, so a client whose connection dropped goes on from there.  ``POST
/files/uploads/{id}/complete`` passes the bytes through the malware scan and
the server's encryption into a blob and makes it a file, exactly as ``POST
/files`` does.  The parts wait in a spool file under the server's folder
(the client's ciphertext, never in memory whole); an upload left unfinished
for a day is dropped, and ``DELETE`` drops it at once.  Another user's id is a
plain 404.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.engine import Connection
from starlette.requests import ClientDisconnect

from livedata_cli.server import clock, db, files
from livedata_cli.server.api import ApiError, ClientDep, Context, CtxDep, UserDep, audit, not_found
from livedata_cli.server.config import default_dir
from livedata_cli.server.security import new_id

router = APIRouter(prefix="/files/uploads", tags=["files"])
log = logging.getLogger("livedata.server")

EXPIRY = 24 * 3600.0
READ = 256 * 1024

metadata = sa.MetaData()
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), sa.ForeignKey(db.users.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", sa.Text, nullable=False, server_default=""),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("replace", sa.Boolean, nullable=False),
    sa.Column("create_only", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_uploads_owner", "owner_id"),
    sa.Index("ix_uploads_created", "created_at"),
)


def create_tables(conn: Connection) -> None:
    """The migration that adds this table."""
    metadata.create_all(conn)


class UploadOut(BaseModel):
    id: str
    received: int
    size: int | None
    expires_at: float


def _spool(upload_id: str) -> Path:
    return default_dir() / "uploads" / f"{upload_id}.part"


def _out(row: Any) -> UploadOut:
    return UploadOut(id=row.id, received=row.received, size=row.size, expires_at=row.created_at + EXPIRY)


def _owned(conn: Connection, user_id: str, upload_id: str) -> Any:
    row = conn.execute(
        sa.select(uploads).where(uploads.c.id == upload_id, uploads.c.owner_id == user_id)
    ).first()
    if row is None:
        raise not_found()
    return row


def _drop(conn: Connection, upload_id: str) -> None:
    conn.execute(uploads.delete().where(uploads.c.id == upload_id))
    _spool(upload_id).unlink(missing_ok=True)


def expire(c: Context, now: float | None = None) -> int:
    """Drop the uploads left unfinished for a day; how many."""
    cutoff = (clock.now() if now is None else now) - EXPIRY
    with c.db.write() as conn:
        ids = list(conn.scalars(sa.select(uploads.c.id).where(uploads.c.created_at < cutoff)))
        for upload_id in ids:
            _drop(conn, upload_id)
    return len(ids)


def _room(conn: Connection, user_id: str) -> tuple[int, int]:
    quota, used = conn.execute(
        sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user_id)
    ).one()
    return int(quota), int(used)


@router.post("", status_code=201, response_model=UploadOut, summary="Open a resumable upload")
def open_upload(
    request: Request,
    c: CtxDep,
    who: ClientDep,
    user: UserDep,
    file_name: Annotated[str, Query(min_length=1, max_length=1024)] = "upload",
    content_type: Annotated[str, Query(min_length=1, max_length=255)] = "application/octet-stream",
    description: Annotated[str, Query(max_length=10_000)] = "",
    tag: Annotated[list[files.Tag] | None, Query(max_length=files.MAX_TAGS, description="a tag")] = None,
    size: Annotated[int | None, Query(ge=0, le=2**62, description="the whole upload's bytes, when known")] = None,
    replace: Annotated[bool, Query(description="once committed, purge the caller's other files of this name")] = False,
) -> UploadOut:
    create_only = request.headers.get("if-none-match", "").strip() == "*"
    expire(c)
    now = clock.now()
    upload_id = new_id()
    with c.db.write() as conn:
        quota, used = _room(conn, user.id)
        if size is not None and size > quota - used:
            raise files._quota_error(size, used, quota)
        if create_only and files._named(conn, user.id, file_name):
            raise files._exists_error()
        conn.execute(
            uploads.insert().values(
                id=upload_id, owner_id=user.id, file_name=file_name, content_type=content_type,
                description=description, tags="\n".join(tag or []), size=size, received=0,
                replace=replace, create_only=create_only, created_at=now,
            )
        )
        audit(conn, who, user.id, "upload.open", "upload", upload_id)
        row = _owned(conn, user.id, upload_id)
    path = _spool(upload_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    return _out(row)


@router.get("/{upload_id}", response_model=UploadOut, summary="How many bytes of an upload the server holds")
def get_upload(upload_id: str, c: CtxDep, user: UserDep) -> UploadOut:
    with c.db.read() as conn:
        return _out(_owned(conn, user.id, upload_id))


@router.head("/{upload_id}", summary="How many bytes the server holds, as the Upload-Offset header")
def head_upload(upload_id: str, c: CtxDep, user: UserDep) -> Response:
    with c.db.read() as conn:
        row = _owned(conn, user.id, upload_id)
    return Response(headers={"Upload-Offset": str(row.received)})


_RANGE = re.compile(r"^bytes (\d{1,18})-(\d{1,18})/(\d{1,18}|\*)$")  # bounded: int() of 5,000 digits is a 500


@router.put(
    "/{upload_id}",
    response_model=UploadOut,
    summary="Append a part: Content-Range: bytes a-b/total, with a the bytes already held",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_part(upload_id: str, request: Request, c: CtxDep, user: UserDep) -> UploadOut:
    m = _RANGE.match(request.headers.get("content-range", "").strip())
    if m is None:
        raise ApiError(400, "bad_range", "a part needs Content-Range: bytes FIRST-LAST/TOTAL (TOTAL may be *)")
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        raise ApiError(400, "bad_range", "Content-Range is out of order")
    with c.db.read() as conn:
        row = _owned(conn, user.id, upload_id)
        quota, used = _room(conn, user.id)
    if first != row.received:
        raise ApiError(409, "wrong_offset", f"the server holds {row.received} bytes of this upload, not {first}")
    size = row.size if row.size is not None else total
    if total is not None and size != total:
        raise ApiError(400, "bad_range", f"this upload was declared as {size} bytes, not {total}")
    end = last + 1
    if (size is not None and end > size) or end > quota - used:
        raise files._quota_error(end, used, quota)
    fd = await to_thread.run_sync(lambda: os.open(_spool(upload_id), os.O_WRONLY))
    pos = first
    try:
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                if pos + len(chunk) > end:
                    raise ApiError(400, "length_mismatch", "the part is longer than its Content-Range")
                await to_thread.run_sync(os.pwrite, fd, chunk, pos)
                pos += len(chunk)
        except ClientDisconnect:
            pass  # keep what arrived: the client asks the offset and goes on from there
    finally:
        os.close(fd)
        with c.db.write() as conn:
            conn.execute(
                uploads.update().where(uploads.c.id == upload_id, uploads.c.received == first).values(
                    received=pos, size=size
                )
            )
            row = _owned(conn, user.id, upload_id)
    log.info("upload", extra={"fields": {
        "event": "upload_part", "user_id": user.id, "upload_id": upload_id, "first": first, "received": pos,
    }})
    return _out(row)


async def _spooled(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while True:
            chunk = await to_thread.run_sync(f.read, READ)
            if not chunk:
                return
            yield chunk


@router.post("/{upload_id}/complete", status_code=201, response_model=files.FileOut, summary="Commit an upload")
async def complete(upload_id: str, c: CtxDep, who: ClientDep, user: UserDep) -> files.FileOut:
    with c.db.read() as conn:
        row = _owned(conn, user.id, upload_id)
        quota, used = _room(conn, user.id)
    if row.size is not None and row.received != row.size:
        raise ApiError(409, "incomplete_upload", f"the server holds {row.received} of {row.size} bytes")
    blob = await files.store_body(
        c, who, user, _spooled(_spool(upload_id)), room=max(0, quota - used), declared=row.received,
        used=used, quota=quota,
    )
    out = files.commit(
        c, who, user, blob, file_name=row.file_name, content_type=row.content_type, description=row.description,
        tags=[t for t in row.tags.split("\n") if t], replace=row.replace, create_only=row.create_only,
        used=used, quota=quota,
    )
    with c.db.write() as conn:
        _drop(conn, upload_id)
    return out


@router.delete("/{upload_id}", status_code=204, summary="Drop an unfinished upload")
def drop_upload(upload_id: str, c: CtxDep, who: ClientDep, user: UserDep) -> Response:
    with c.db.write() as conn:
        _owned(conn, user.id, upload_id)
        _drop(conn, upload_id)
        audit(conn, who, user.id, "upload.drop", "upload", upload_id)
    return Response(status_code=204)
