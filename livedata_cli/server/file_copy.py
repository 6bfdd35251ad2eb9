"""``POST /api/v1/files/{file_id}/copy``: a byte range of a file as a new file, server-side.

A livedata vault packs small files into one object; sharing one of them
needs an object of its own (a share hands out a whole file), and copying it
here spares the client a download and an upload.  The copy belongs to the
caller, counts against the quota like any upload, and another user's file id
is a plain 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter
from pydantic import BaseModel, Field

from livedata_cli.server import db, spools
from livedata_cli.server.blobs import read_range
from livedata_cli.server.deps import ApiError, ClientDep, CtxDep, OwnedFile, UserDep
from livedata_cli.server.files import FileOut, _quota_error, commit, store_body

router = APIRouter(prefix="/files", tags=["files"])


class CopyIn(BaseModel):
    offset: Annotated[int, Field(ge=0, description="first byte of the source to copy")]
    length: Annotated[int, Field(ge=1, description="how many bytes to copy")]
    file_name: Annotated[str, Field(min_length=1, max_length=1024, description="the new file's name")]
    replace: Annotated[
        bool, Field(description="once stored, purge the caller's other files of this file_name (an overwrite)")
    ] = True


async def _chunks(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator (store reads, decryption) run off the event loop."""
    while True:
        chunk = await to_thread.run_sync(next, it, None)
        if chunk is None:
            return
        yield chunk


@router.post(
    "/{file_id}/copy",
    status_code=201,
    response_model=FileOut,
    summary="Copy a byte range of a file into a new file of the caller (server-side)",
    responses={
        404: {"description": "no such file of the caller"},
        413: {"description": "over the account's storage quota"},
        416: {"description": "the range is not inside the file"},
    },
)
async def copy_range(file: OwnedFile, body: CopyIn, c: CtxDep, user: UserDep, who: ClientDep) -> FileOut:
    with c.db.read() as conn:
        row = file.row(conn)
        quota, used = conn.execute(
            sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user.id)
        ).one()
        used += spools.held_bytes(conn, user.id)
    if body.offset + body.length > row.size:
        raise ApiError(
            416, "range_not_satisfiable", f"range outside 0..{row.size - 1}", {"Content-Range": f"bytes */{row.size}"}
        )
    room = max(0, quota - used)
    if body.length > room:
        raise _quota_error(body.length, used, quota)
    source = read_range(c.store, c.keys, row, body.offset, body.offset + body.length - 1)
    blob = await store_body(c, who, user, _chunks(source), room=room, declared=body.length, used=used, quota=quota)
    return commit(
        c, who, user, blob, file_name=body.file_name, content_type="application/octet-stream", description="",
        tags=[], replace=body.replace, create_only=False, used=used, quota=quota,
    )
