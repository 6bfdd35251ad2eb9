"""``/api/v1/files``: streamed upload, paginated list, metadata, Range download, trash, tags, search.

Every query names the caller as owner, so another user's file id is a plain
404, the same answer as an id that never existed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection
from starlette.requests import ClientDisconnect

from livedata_cli.server import db, spools
from livedata_cli.server.blobs import (
    LengthMismatch,
    StoredBlob,
    TooLarge,
    blob_key,
    read_range,
    store_stream,
)
from livedata_cli.server.db import AnyRow
from livedata_cli.server.deps import (
    ApiError,
    Client,
    ClientDep,
    Context,
    CtxDep,
    FileRef,
    OwnedFile,
    Page,
    PageDep,
    User,
    UserDep,
    audit,
)
from livedata_cli.server.scan import Infected, ScanFailed, scanning
from livedata_cli.server.security import new_id

router = APIRouter(prefix="/files", tags=["files"])
log = logging.getLogger("livedata.server")

Tag = Annotated[str, Field(min_length=1, max_length=200)]
MAX_TAGS = 100


class FileOut(BaseModel):
    id: str
    file_name: str
    content_type: str
    size: int
    description: str
    metadata: dict[str, Any]
    tags: list[str]
    created_at: float
    updated_at: float
    deleted_at: float | None


class FileList(Page):
    items: list[FileOut]


class FilePatch(BaseModel):
    file_name: Annotated[str | None, Field(min_length=1, max_length=1024)] = None
    content_type: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    description: Annotated[str | None, Field(max_length=10_000)] = None
    metadata: dict[str, Any] | None = None
    tags: Annotated[list[Tag] | None, Field(max_length=MAX_TAGS)] = None


class TagChange(BaseModel):
    add: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    remove: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS, description="tags to add (the seed's field)")] = []


def _tags(conn: Connection, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for fid, tag in conn.execute(
            sa.select(db.file_tags.c.file_id, db.file_tags.c.tag)
            .where(db.file_tags.c.file_id.in_(ids))
            .order_by(db.file_tags.c.tag)
        ):
            out[fid].append(tag)
    return out


def _out(row: AnyRow, tags: list[str]) -> FileOut:
    return FileOut(
        id=row.id,
        file_name=row.file_name,
        content_type=row.content_type,
        size=row.size,
        description=row.description,
        metadata=json.loads(row.meta or "{}"),
        tags=tags,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _set_tags(conn: Connection, file_id: str, add: list[str], remove: list[str]) -> None:
    if remove:
        conn.execute(db.file_tags.delete().where(db.file_tags.c.file_id == file_id, db.file_tags.c.tag.in_(remove)))
    have = set(_tags(conn, [file_id])[file_id])
    new = sorted(set(add) - have)
    if len(have) + len(new) > MAX_TAGS:
        raise ApiError(422, "too_many_tags", f"a file holds at most {MAX_TAGS} tags")
    if new:
        conn.execute(db.file_tags.insert(), [{"file_id": file_id, "tag": t} for t in new])


def _meta_json(meta: dict[str, Any]) -> str:
    text = json.dumps(meta, separators=(",", ":"))
    if len(text) > 64_000:
        raise ApiError(422, "metadata_too_large", "metadata is limited to 64 kB of JSON")
    return text


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.post(
    "",
    status_code=201,
    response_model=FileOut,
    summary="Upload a file: the raw body is the content (streamed, never held whole)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        413: {"description": "over the account's storage quota"},
        422: {"description": "flagged by the malware scan (with --scan-command)"},
        503: {"description": "the malware scan could not give a verdict"},
    },
)
async def upload(
    request: Request,
    c: CtxDep,
    who: ClientDep,
    user: UserDep,
    file_name: Annotated[str, Query(min_length=1, max_length=1024)] = "upload",
    content_type: Annotated[str, Query(min_length=1, max_length=255)] = "application/octet-stream",
    description: Annotated[str, Query(max_length=10_000)] = "",
    tag: Annotated[list[Tag] | None, Query(max_length=MAX_TAGS, description="a tag; repeat for several")] = None,
    replace: Annotated[
        bool, Query(description="once stored, purge the caller's other files of the same file_name (an overwrite)")
    ] = False,
) -> FileOut:
    declared_text = request.headers.get("content-length")
    declared = int(declared_text) if declared_text and declared_text.isdigit() else None
    # ``If-None-Match: *``: create only; 412 when a live file of this name exists (checked
    # before the body is read, and again atomically when the row is written).
    create_only = request.headers.get("if-none-match", "").strip() == "*"
    with c.db.read() as conn:
        quota, used = conn.execute(
            sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user.id)
        ).one()
        used += spools.held_bytes(conn, user.id)  # open uploads' spools count too
        if create_only and _named(conn, user.id, file_name):
            raise _exists_error()
    room = max(0, quota - used)
    if declared is not None and declared > room:
        raise _quota_error(declared, used, quota)
    try:
        blob = await store_body(c, who, user, _body(request), room=room, declared=declared, used=used, quota=quota)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the upload ended early; nothing was stored") from None
    return commit(
        c, who, user, blob, file_name=file_name, content_type=content_type, description=description,
        tags=list(tag or []), replace=replace, create_only=create_only, used=used, quota=quota,
    )


async def store_body(
    c: Context, who: Client, user: User, body: AsyncIterator[bytes], *, room: int, declared: int | None, used: int,
    quota: int,
) -> StoredBlob:
    """``body`` through the scan and the server's encryption into a new blob (API errors for the failures)."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            scan = None
            if c.config.scan_command:
                scan = await stack.enter_async_context(
                    scanning(shlex.split(c.config.scan_command), c.config.scan_timeout)
                )
            return await store_stream(c.store, c.keys, body, limit=room, declared=declared, scan=scan)
    except Infected as e:
        log.warning("scan", extra={"fields": {"event": "upload_infected", "user_id": user.id, "report": e.report}})
        with c.db.write() as conn:
            audit(conn, who, user.id, "file.upload", "file", None, status="infected")
        raise ApiError(
            422, "infected", f"the malware scan flagged this upload ({e.report}); nothing was stored"
        ) from None
    except ScanFailed as e:
        log.error("scan", extra={"fields": {"event": "upload_scan_failed", "user_id": user.id, "error": str(e)}})
        raise ApiError(
            503, "scan_failed", "the malware scan could not check this upload; nothing was stored; try again later"
        ) from None
    except TooLarge:
        raise _quota_error(None, used, quota) from None
    except LengthMismatch:
        raise ApiError(
            400, "length_mismatch", "the body's length differs from its Content-Length; nothing was stored"
        ) from None


def commit(
    c: Context, who: Client, user: User, blob: StoredBlob, *, file_name: str, content_type: str, description: str,
    tags: list[str], replace: bool, create_only: bool, used: int, quota: int,
    before: Callable[[Connection], None] | None = None,
) -> FileOut:
    """A stored blob becomes the caller's file (quota taken, audited, same-named files purged with ``replace``).

    ``before`` runs first in the same transaction (a resumable upload's row
    goes there, so that one upload makes one file).  The quota counts the
    bytes the caller's open uploads hold.
    """
    now = time.time()
    fid = new_id()
    replaced: list[Any] = []
    try:
        with c.db.write() as conn:
            spools.lock_account(conn, user.id)
            if before is not None:
                before(conn)
            if create_only and _named(conn, user.id, file_name):
                raise _exists_error()
            held = spools.held_bytes(conn, user.id)
            took = conn.execute(
                db.users.update()
                .where(db.users.c.id == user.id, db.users.c.used_bytes + blob.size + held <= db.users.c.quota_bytes)
                .values(used_bytes=db.users.c.used_bytes + blob.size)
            )
            if took.rowcount != 1:  # a concurrent upload took the room first
                raise _quota_error(blob.size, used, quota)
            conn.execute(
                db.files.insert().values(
                    id=fid,
                    owner_id=user.id,
                    file_name=file_name,
                    content_type=content_type,
                    size=blob.size,
                    description=description,
                    meta="{}",
                    blob_key=blob_key(blob.blob_id),
                    key_version=blob.key_version,
                    wrapped_key=blob.wrapped_key,
                    created_at=now,
                    updated_at=now,
                )
            )
            _set_tags(conn, fid, tags, [])
            audit(conn, who, user.id, "file.upload", "file", fid)
            if replace:
                replaced = [r for r in _named(conn, user.id, file_name, deleted=None) if r.id != fid]
                for old in replaced:
                    purge_file(c, conn, old)
                    audit(conn, who, user.id, "file.purge", "file", old.id)
            row = FileRef(user, fid).row(conn)
            got = _tags(conn, [fid])[fid]
    except BaseException:
        c.store.delete(blob_key(blob.blob_id))
        raise
    for old in replaced:
        c.store.delete(old.blob_key)
    return _out(row, got)


def _named(conn: Connection, user_id: str, file_name: str, *, deleted: bool | None = False) -> list[Any]:
    """The caller's files called ``file_name`` (live ones unless ``deleted`` says otherwise)."""
    q = sa.select(db.files).where(db.files.c.owner_id == user_id, db.files.c.file_name == file_name)
    if deleted is False:
        q = q.where(db.files.c.deleted_at.is_(None))
    return list(conn.execute(q).all())


def _exists_error() -> ApiError:
    return ApiError(412, "file_exists", "a file of this name exists (If-None-Match: *)")


def _quota_error(size: int | None, used: int, quota: int) -> ApiError:
    what = f"{size} bytes" if size is not None else "this upload"
    return ApiError(
        413,
        "quota_exceeded",
        f"{what} would pass the storage quota: {used} of {quota} bytes used, {max(0, quota - used)} free",
    )


def _page(conn: Connection, q: sa.Select[Any], page: PageDep) -> FileList:
    total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
    rows = conn.execute(
        q.order_by(db.files.c.created_at.desc(), db.files.c.id).limit(page.per_page).offset(page.offset)
    ).all()
    tags = _tags(conn, [r.id for r in rows])
    return FileList(
        page=page.page, per_page=page.per_page, total=total, items=[_out(r, tags[r.id]) for r in rows]
    )


@router.get("", response_model=FileList, summary="List files, newest first (by name with name, prefix or after)")
def list_files(
    c: CtxDep,
    user: UserDep,
    page: PageDep,
    trash: Annotated[bool, Query(description="list deleted files instead")] = False,
    name: Annotated[str | None, Query(max_length=1024, description="only files of exactly this file_name")] = None,
    prefix: Annotated[str | None, Query(max_length=1024, description="only file_names starting with this")] = None,
    after: Annotated[
        str | None, Query(max_length=1024, description="only file_names after this one (paging by name)")
    ] = None,
) -> FileList:
    q = sa.select(db.files).where(db.files.c.owner_id == user.id)
    q = q.where(db.files.c.deleted_at.is_not(None) if trash else db.files.c.deleted_at.is_(None))
    if name is None and prefix is None and after is None:
        with c.db.read() as conn:
            return _page(conn, q, page)
    # By name, in byte order on every database, so that paging with ``after`` never skips.
    by_name = db.files.c.file_name.collate("C") if c.db.dialect == "postgresql" else db.files.c.file_name
    if name is not None:
        q = q.where(db.files.c.file_name == name)
    if prefix:
        q = q.where(db.files.c.file_name.startswith(prefix, autoescape=True))
    if after is not None:
        q = q.where(by_name > after)
    with c.db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(by_name, db.files.c.id).limit(page.per_page).offset(page.offset)).all()
        tags = _tags(conn, [r.id for r in rows])
    return FileList(
        page=page.page, per_page=page.per_page, total=total, items=[_out(r, tags[r.id]) for r in rows]
    )


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text.lower()) + "%"


@router.get("/search", response_model=FileList, summary="Search the fields the server can see")
def search(
    c: CtxDep,
    user: UserDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="text in the name or description")] = None,
    tag: Annotated[list[Tag] | None, Query(max_length=20, description="has this tag; repeat to require several")] = None,
    content_type: Annotated[str | None, Query(max_length=255, description="type or prefix such as image/")] = None,
    min_size: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    max_size: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="created at or after (Unix time)")] = None,
) -> FileList:
    f = db.files.c
    query = sa.select(db.files).where(f.owner_id == user.id, f.deleted_at.is_(None))
    if q:
        pattern = _like(q)
        query = query.where(
            sa.or_(
                sa.func.lower(f.file_name).like(pattern, escape="\\"),
                sa.func.lower(f.description).like(pattern, escape="\\"),
            )
        )
    for t in tag or []:
        query = query.where(
            sa.exists().where(db.file_tags.c.file_id == f.id, db.file_tags.c.tag == t)
        )
    if content_type:
        query = query.where(
            f.content_type.like(_like(content_type)[1:], escape="\\")
            if content_type.endswith("/")
            else f.content_type == content_type
        )
    if min_size is not None:
        query = query.where(f.size >= min_size)
    if max_size is not None:
        query = query.where(f.size <= max_size)
    if since is not None:
        query = query.where(f.created_at >= since)
    with c.db.read() as conn:
        return _page(conn, query, page)


@router.get("/{file_id}", response_model=FileOut, summary="A file's metadata")
def get_file(file: OwnedFile, c: CtxDep, user: UserDep, who: ClientDep) -> FileOut:
    if c.audit_queue is not None:  # the record waits for the next batch: a read transaction is enough
        with c.db.read() as conn:
            row = file.row(conn, deleted=None)
            out = _out(row, _tags(conn, [file.id])[file.id])
        c.audit_queue.add(who, user.id, "file.read", "file", file.id)
        return out
    with c.db.write() as conn:
        row = file.row(conn, deleted=None)
        audit(conn, who, user.id, "file.read", "file", file.id)
        return _out(row, _tags(conn, [file.id])[file.id])


@router.patch("/{file_id}", response_model=FileOut, summary="Change a file's metadata")
@router.put("/{file_id}", response_model=FileOut, summary="Change a file's metadata (the seed's path; as PATCH)")
def patch_file(file: OwnedFile, body: FilePatch, c: CtxDep, user: UserDep, who: ClientDep) -> FileOut:
    values: dict[str, Any] = {"updated_at": time.time()}
    for name in ("file_name", "content_type", "description"):
        value = getattr(body, name)
        if value is not None:
            values[name] = value
    if body.metadata is not None:
        values["meta"] = _meta_json(body.metadata)
    with c.db.write() as conn:
        file.row(conn)
        conn.execute(db.files.update().where(db.files.c.id == file.id).values(**values))
        if body.tags is not None:
            conn.execute(db.file_tags.delete().where(db.file_tags.c.file_id == file.id))
            _set_tags(conn, file.id, body.tags, [])
        audit(conn, who, user.id, "file.update", "file", file.id)
        row = file.row(conn)
        return _out(row, _tags(conn, [file.id])[file.id])


@router.post("/{file_id}/tags", response_model=FileOut, summary="Add and remove tags")
@router.post("/{file_id}/tag", response_model=FileOut, summary="Add and remove tags (the seed's path; as /tags)")
def tag_file(file: OwnedFile, body: TagChange, c: CtxDep, user: UserDep, who: ClientDep) -> FileOut:
    with c.db.write() as conn:
        file.row(conn)
        _set_tags(conn, file.id, [*body.add, *body.tags], body.remove)
        conn.execute(db.files.update().where(db.files.c.id == file.id).values(updated_at=time.time()))
        audit(conn, who, user.id, "file.tag", "file", file.id)
        row = file.row(conn)
        return _out(row, _tags(conn, [file.id])[file.id])


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as inclusive ``(start, end)``; None for the whole file.

    Several ranges, or a header we cannot read, get the whole file (RFC 9110
    lets a server ignore Range); an unsatisfiable one is a 416.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    # A number past any file's size is read as "past the end": int() of thousands of digits is itself
    # refused by Python (a 500), so such a number is never converted.
    first, last = m.group(1), m.group(2)
    huge = 10**18
    if len(first) > 18:
        first = str(huge)
    if len(last) > 18:
        last = str(huge)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise ApiError(416, "range_not_satisfiable", "empty range", {"Content-Range": f"bytes */{size}"})
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise ApiError(
            416, "range_not_satisfiable", f"range outside 0..{size - 1}", {"Content-Range": f"bytes */{size}"}
        )
    return start, end


def download_response(c: Context, row: AnyRow, range_header: str | None) -> StreamingResponse:
    """A streamed, Range-aware response of a file's bytes, never cached by the client."""
    size = row.size
    wanted = parse_range(range_header, size)
    start, end = wanted if wanted else (0, size - 1)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(0, end - start + 1)),
        "Content-Disposition": "attachment; filename*=UTF-8''" + urllib.parse.quote(row.file_name, safe=""),
        "ETag": f'"{row.id}"',
    }
    status = 200
    if wanted:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    body = read_range(c.store, c.keys, row, start, end) if size else iter(())
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


@router.get(
    "/{file_id}/download",
    summary="Download a file's bytes (Range supported)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "partial content", "content": {"application/octet-stream": {}}},
        416: {"description": "range not satisfiable"},
    },
)
def download(request: Request, file: OwnedFile, c: CtxDep, user: UserDep, who: ClientDep) -> StreamingResponse:
    with c.db.write() as conn:
        row = file.row(conn)
        audit(conn, who, user.id, "file.download", "file", file.id)
    return download_response(c, row, request.headers.get("range"))


def purge_file(c: Context, conn: Connection, row: AnyRow) -> None:
    """Delete a file's row and give its bytes back to the quota; the blob goes after commit."""
    conn.execute(db.files.delete().where(db.files.c.id == row.id))
    conn.execute(
        db.users.update()
        .where(db.users.c.id == row.owner_id)
        .values(used_bytes=sa.func.max(db.users.c.used_bytes - row.size, 0) if c.db.dialect == "sqlite"
                else sa.func.greatest(db.users.c.used_bytes - row.size, 0))
    )


@router.delete("/{file_id}", status_code=204, summary="Move a file to the trash, or purge it for good")
def delete_file(
    file: OwnedFile,
    c: CtxDep,
    user: UserDep,
    who: ClientDep,
    purge: Annotated[bool, Query(description="delete the data now instead of trashing")] = False,
) -> Response:
    with c.db.write() as conn:
        row = file.row(conn, deleted=None if purge else False)
        if purge:
            purge_file(c, conn, row)
            audit(conn, who, user.id, "file.purge", "file", file.id)
        else:
            conn.execute(db.files.update().where(db.files.c.id == file.id).values(deleted_at=time.time()))
            audit(conn, who, user.id, "file.delete", "file", file.id)
    if purge:
        c.store.delete(row.blob_key)
    return Response(status_code=204)


@router.post("/{file_id}/restore", response_model=FileOut, summary="Bring a file back from the trash")
def restore_file(file: OwnedFile, c: CtxDep, user: UserDep, who: ClientDep) -> FileOut:
    with c.db.write() as conn:
        file.row(conn, deleted=True)
        conn.execute(
            db.files.update().where(db.files.c.id == file.id).values(deleted_at=None, updated_at=time.time())
        )
        audit(conn, who, user.id, "file.restore", "file", file.id)
        row = file.row(conn)
        return _out(row, _tags(conn, [file.id])[file.id])


def purge_trash(c: Context, now: float | None = None) -> int:
    """Purge files trashed longer than the retention; returns how many."""
    cutoff = (time.time() if now is None else now) - c.config.trash_retention
    with c.db.read() as conn:
        ids = list(conn.scalars(sa.select(db.files.c.id).where(db.files.c.deleted_at < cutoff).limit(1000)))
    done = 0
    for fid in ids:
        with c.db.write() as conn:
            row = conn.execute(
                sa.select(db.files).where(db.files.c.id == fid, db.files.c.deleted_at < cutoff)
            ).first()
            if row is None:
                continue
            purge_file(c, conn, row)
        c.store.delete(row.blob_key)
        done += 1
    return done
