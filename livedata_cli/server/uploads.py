"""``/api/v1/files/uploads``: resumable uploads, sent in parts and committed once whole.

``POST /files/uploads`` opens one (the same query parameters as ``POST
/files``, plus an optional declared ``size``); each ``PUT
/files/uploads/{id}`` with ``Content-Range: bytes a-b/total`` (``total`` may
be ``*`` until the size is known) appends its body at offset ``a``, which must
be the number of bytes the server holds; ``GET /files/uploads/{id}`` says that
number, so a client whose connection dropped goes on from there.  ``POST
/files/uploads/{id}/complete`` passes the bytes through the malware scan and
the server's encryption into a blob and makes it a file, exactly as ``POST
/files`` does.  The parts wait in a spool (``server/spools.py``: a file under the
server's folder, or an S3 multipart upload with ``--store s3://``; the
client's ciphertext, never in memory whole).  Spooled bytes count against the
quota, an account has at most ``--max-open-uploads`` open at once, an upload
idle for ``--upload-idle-timeout`` seconds is dropped, and ``DELETE`` drops it
at once.  Parts and commits are atomic: one request at a time writes an
upload (a second one at the same offset is a 409), and one commit makes one
file.  Another user's id is a plain 404.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.engine import Connection
from starlette.requests import ClientDisconnect

from livedata_cli.server import clock, files, spools
from livedata_cli.server.db import AnyRow, uploads
from livedata_cli.server.deps import (
    ApiError,
    ClientDep,
    Context,
    CtxDep,
    OwnedUpload,
    UploadRef,
    UserDep,
    audit,
)
from livedata_cli.server.security import new_id

router = APIRouter(prefix="/files/uploads", tags=["files"])
log = logging.getLogger("livedata.server")


class UploadOut(BaseModel):
    id: str
    received: int
    size: int | None
    expires_at: float


def _idle(c: Context) -> float:
    return float(c.config.upload_idle_timeout)


def _lease(c: Context) -> float:
    """How long a claim lasts without news: past the body timeout, so only a dead request loses it."""
    return max(60.0, 2 * c.config.body_timeout)


def _out(c: Context, row: AnyRow) -> UploadOut:
    active = row.last_active if row.last_active is not None else row.created_at
    return UploadOut(id=row.id, received=row.received, size=row.size, expires_at=active + _idle(c))


def _busy() -> ApiError:
    return ApiError(409, "upload_busy", "another request is writing or committing this upload; ask its offset again")


def _elsewhere() -> ApiError:
    return ApiError(
        503, "spool_unavailable",
        "this server does not hold the upload's spool: with a folder store, every part goes to the "
        "host that opened the upload (or run the servers on an S3 store)",
        headers={"Retry-After": "5"},
    )


def _claimed(row: AnyRow, now: float) -> bool:
    return row.claim is not None and row.claim_until is not None and row.claim_until > now


def expire(c: Context, now: float | None = None) -> int:
    """Drop the uploads idle for longer than ``--upload-idle-timeout``; how many."""
    now = clock.now() if now is None else now
    cutoff = now - _idle(c)
    u = uploads.c
    with c.db.write() as conn:
        ids = list(
            conn.scalars(
                sa.select(u.id).where(
                    sa.func.coalesce(u.last_active, u.created_at) < cutoff,
                    sa.or_(u.claim_until.is_(None), u.claim_until < now),
                )
            )
        )
        if ids:
            conn.execute(uploads.delete().where(u.id.in_(ids)))
    for upload_id in ids:
        spools.discard(c.store, upload_id)
    return len(ids)


def discard_all(c: Context, upload_ids: list[str]) -> None:
    """The spools of uploads whose rows are gone (account deletion)."""
    for upload_id in upload_ids:
        spools.discard(c.store, upload_id)


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
        quota, used = spools.lock_account(conn, user.id)
        held = spools.held_bytes(conn, user.id)
        if size is not None and size > quota - used - held:
            raise files._quota_error(size, used + held, quota)
        n_open = conn.execute(
            sa.select(sa.func.count()).select_from(uploads).where(uploads.c.owner_id == user.id)
        ).scalar_one()
        if n_open >= c.config.max_open_uploads:
            raise ApiError(
                429, "too_many_uploads",
                f"this account has {n_open} unfinished uploads, the most it may hold; "
                "finish or drop one (DELETE /files/uploads/ID), or wait for idle ones to expire",
                headers={"Retry-After": str(int(_idle(c)))},
            )
        if create_only and files._named(conn, user.id, file_name):
            raise files._exists_error()
        conn.execute(
            uploads.insert().values(
                id=upload_id, owner_id=user.id, file_name=file_name, content_type=content_type,
                description=description, tags="\n".join(tag or []), size=size, received=0,
                replace=replace, create_only=create_only, created_at=now, last_active=now,
            )
        )
        audit(conn, who, user.id, "upload.open", "upload", upload_id)
        row = UploadRef(user, upload_id).row(conn)
    spools.create(c.store, upload_id)
    return _out(c, row)


@router.get("/{upload_id}", response_model=UploadOut, summary="How many bytes of an upload the server holds")
def get_upload(upload: OwnedUpload, c: CtxDep) -> UploadOut:
    with c.db.read() as conn:
        return _out(c, upload.row(conn))


@router.head("/{upload_id}", summary="How many bytes the server holds, as the Upload-Offset header")
def head_upload(upload: OwnedUpload, c: CtxDep) -> Response:
    with c.db.read() as conn:
        row = upload.row(conn)
    return Response(headers={"Upload-Offset": str(row.received)})


_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)$")


def _claim_part(c: Context, upload: UploadRef, first: int, end: int, total: int | None, token: str) -> AnyRow:
    """Take the upload for one part, or say why not: 409 (offset, busy), 400 (size), 413 (quota)."""
    now = clock.now()
    with c.db.write() as conn:
        quota, used = spools.lock_account(conn, upload.user.id)
        row = upload.row(conn)
        if _claimed(row, now):
            raise _busy()
        if first != row.received:
            raise ApiError(409, "wrong_offset", f"the server holds {row.received} bytes of this upload, not {first}")
        size = row.size if row.size is not None else total
        if total is not None and size != total:
            raise ApiError(400, "bad_range", f"this upload was declared as {size} bytes, not {total}")
        held = spools.held_bytes(conn, upload.user.id, besides=upload.id)
        if (size is not None and end > size) or used + held + end > quota:
            raise files._quota_error(end, used + held, quota)
        conn.execute(
            uploads.update().where(uploads.c.id == upload.id).values(
                claim=token, claim_until=now + _lease(c), held=end, size=size, last_active=now,
            )
        )
        return upload.row(conn)


def _release(c: Context, upload_id: str, token: str, values: dict[str, Any]) -> bool:
    """End a claim (with ``values``); False when it was lost to another request meanwhile."""
    with c.db.write() as conn:
        done = conn.execute(
            uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token).values(
                claim=None, claim_until=None, **values,
            )
        )
        return done.rowcount == 1


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
    responses={409: {"description": "wrong offset, or another request is writing this upload"}},
)
async def put_part(upload: OwnedUpload, request: Request, c: CtxDep, user: UserDep) -> UploadOut:
    m = _RANGE.match(request.headers.get("content-range", "").strip())
    if m is None:
        raise ApiError(400, "bad_range", "a part needs Content-Range: bytes FIRST-LAST/TOTAL (TOTAL may be *)")
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        raise ApiError(400, "bad_range", "Content-Range is out of order")
    if max(last, total or 0) >= 2**62:
        raise ApiError(413, "too_large", "Content-Range goes past the largest upload the server takes (2^62 bytes)")
    end = last + 1
    token = new_id()
    upload_id = upload.id
    row = await to_thread.run_sync(_claim_part, c, upload, first, end, total, token)

    def open_sink() -> spools.LocalSink | spools.S3Sink:
        with c.db.read() as conn:
            return spools.sink(c, conn, row, first)

    try:
        sink = await to_thread.run_sync(open_sink)
    except BaseException as e:
        await to_thread.run_sync(_release, c, upload_id, token, {"held": row.received})
        if isinstance(e, spools.SpoolMissing):
            raise _elsewhere() from None
        raise
    renew_at = clock.now() + _lease(c) / 3
    committed = False
    try:
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                if sink.pos + len(chunk) > end:
                    raise ApiError(400, "length_mismatch", "the part is longer than its Content-Range")
                await sink.write(chunk)
                if clock.now() > renew_at:
                    renew_at = clock.now() + _lease(c) / 3
                    await to_thread.run_sync(_renew, c, upload_id, token)
        except ClientDisconnect:
            pass  # keep what arrived: the client asks the offset and goes on from there
        await sink.finish()
        pos = sink.pos

        def record() -> bool:
            now = clock.now()
            with c.db.write() as conn:
                done = conn.execute(
                    uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token).values(
                        claim=None, claim_until=None, received=pos, held=pos, last_active=now,
                    )
                )
                if done.rowcount != 1:
                    return False
                sink.record(conn)
            return True

        committed = await to_thread.run_sync(record)
        if not committed:
            raise _busy()
    finally:
        sink.close()
        await to_thread.run_sync(sink.after_commit, committed)
        if not committed:
            await to_thread.run_sync(_release, c, upload_id, token, {"held": row.received})
    log.info("upload", extra={"fields": {
        "event": "upload_part", "user_id": user.id, "upload_id": upload_id, "first": first, "received": pos,
    }})
    with c.db.read() as conn:
        return _out(c, upload.row(conn))


def _renew(c: Context, upload_id: str, token: str) -> None:
    now = clock.now()
    with c.db.write() as conn:
        conn.execute(
            uploads.update().where(uploads.c.id == upload_id, uploads.c.claim == token).values(
                claim_until=now + _lease(c), last_active=now,
            )
        )


def _claim_commit(c: Context, upload: UploadRef, token: str) -> tuple[AnyRow, int, int]:
    now = clock.now()
    with c.db.write() as conn:
        quota, used = spools.lock_account(conn, upload.user.id)
        row = upload.row(conn)
        if _claimed(row, now):
            raise _busy()
        if row.size is not None and row.received != row.size:
            raise ApiError(409, "incomplete_upload", f"the server holds {row.received} of {row.size} bytes")
        conn.execute(
            uploads.update().where(uploads.c.id == upload.id).values(
                claim=token, claim_until=now + _lease(c), last_active=now,
            )
        )
        return upload.row(conn), quota, used


@router.post("/{upload_id}/complete", status_code=201, response_model=files.FileOut, summary="Commit an upload")
async def complete(upload: OwnedUpload, c: CtxDep, who: ClientDep, user: UserDep) -> files.FileOut:
    token = new_id()
    upload_id = upload.id
    row, quota, used = await to_thread.run_sync(_claim_commit, c, upload, token)
    try:
        if not spools.is_s3(c.store) and not spools.local_path(upload_id).exists():
            raise _elsewhere()
        if await to_thread.run_sync(spools.assemble, c, row):
            with c.db.read() as conn:
                row = upload.row(conn)
        blob = await files.store_body(
            c, who, user, spools.read(c, row), room=max(0, quota - used), declared=row.received,
            used=used, quota=quota,
        )

        def take(conn: Connection) -> None:
            """In the commit's transaction: the upload row goes, or nothing is committed."""
            gone = conn.execute(uploads.delete().where(uploads.c.id == upload_id, uploads.c.claim == token))
            if gone.rowcount != 1:
                raise _busy()

        out = await to_thread.run_sync(lambda: files.commit(
            c, who, user, blob, file_name=row.file_name, content_type=row.content_type, description=row.description,
            tags=[t for t in row.tags.split("\n") if t], replace=row.replace, create_only=row.create_only,
            used=used, quota=quota, before=take,
        ))
    except BaseException:
        await to_thread.run_sync(_release, c, upload_id, token, {})
        raise
    await to_thread.run_sync(spools.discard, c.store, upload_id)
    return out


@router.delete("/{upload_id}", status_code=204, summary="Drop an unfinished upload")
def drop_upload(upload: OwnedUpload, c: CtxDep, who: ClientDep, user: UserDep) -> Response:
    upload_id = upload.id
    with c.db.write() as conn:
        row = upload.row(conn)
        if _claimed(row, clock.now()):
            raise _busy()
        conn.execute(uploads.delete().where(uploads.c.id == upload_id))
        audit(conn, who, user.id, "upload.drop", "upload", upload_id)
    spools.discard(c.store, upload_id)
    return Response(status_code=204)
