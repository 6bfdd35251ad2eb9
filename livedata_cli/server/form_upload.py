"""``POST /api/v1/files/upload``: the seed's upload path, as a multipart form or as a raw body.

The seed's server took ``multipart/form-data`` with the content in a part
named ``file`` (multer's ``upload.single('file')``), with the other fields
(``file_name``, ``content_type``, ``description``, ``tags``) as form fields.
The form is parsed as it streams in: the ``file`` part goes straight into
the same scan-and-encrypt path as ``POST /files``, never held whole nor
spooled in plaintext; the other fields together are limited to 64 KiB.
Any other content type is the raw body, exactly as ``POST /files`` takes it.
"""

from __future__ import annotations

import collections
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from livedata_cli.server import db, files
from livedata_cli.server.blobs import blob_key
from livedata_cli.server.deps import ApiError, ClientDep, CtxDep, UserDep

router = APIRouter(prefix="/files", tags=["files"])

FIELDS_LIMIT = 64 * 1024
FILE_FIELD = "file"


def _bad(message: str, code: str = "invalid_form") -> ApiError:
    return ApiError(400, code, message)


@dataclass
class _Form:
    """What the parser has seen so far: the small fields, and the file part's pending bytes."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    file_name: str | None = None
    file_type: str | None = None
    file_seen: bool = False
    field_bytes: int = 0
    ended: bool = False  # the closing boundary was read
    # the part being read
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


def _text(raw: bytes | bytearray, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{what} is not UTF-8") from None


def _parser(boundary: bytes, form: _Form) -> MultipartParser:
    def on_part_begin() -> None:
        form.headers, form.name, form.is_file = {}, None, False
        form.value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        form.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        form.header_value += data[start:end]

    def on_header_end() -> None:
        name = bytes(form.header_field).decode("latin-1").strip().lower()
        form.headers[name] = _text(form.header_value, "a part header")
        form.header_field, form.header_value = bytearray(), bytearray()

    def on_headers_finished() -> None:
        _kind, options = parse_options_header(form.headers.get("content-disposition", ""))
        name = options.get(b"name")
        if name is None:
            raise _bad("a form part without a name")
        form.name = _text(name, "a part name")
        filename = options.get(b"filename")
        if form.name == FILE_FIELD:
            if form.file_seen:
                raise _bad(f"more than one '{FILE_FIELD}' part", "unexpected_field")
            form.file_seen, form.is_file = True, True
            form.file_name = _text(filename, "the file name") if filename else None
            form.file_type = form.headers.get("content-type") or None
        elif filename is not None:
            raise _bad(f"unexpected file field {form.name!r}: the content goes in '{FILE_FIELD}'", "unexpected_field")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if form.is_file:
            form.pending.append(bytes(data[start:end]))
            return
        form.field_bytes += end - start
        if form.field_bytes > FIELDS_LIMIT:
            raise ApiError(413, "body_too_large", f"the form's fields are limited to {FIELDS_LIMIT} bytes")
        form.value += data[start:end]

    def on_part_end() -> None:
        if form.name is not None and not form.is_file:
            form.fields.setdefault(form.name, []).append(_text(form.value, f"field {form.name!r}"))

    def on_end() -> None:
        form.ended = True

    callbacks: Any = {
        "on_end": on_end,
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    return MultipartParser(boundary, callbacks)


async def _file_part(request: Request, parser: MultipartParser, form: _Form) -> AsyncIterator[bytes]:
    """The bytes of the ``file`` part as they arrive; the rest of the form is parsed on the way."""
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except ApiError:
            raise
        except Exception:  # python-multipart's parse errors
            raise _bad("the multipart body cannot be read") from None
        while form.pending:
            yield form.pending.popleft()
    try:
        parser.finalize()
    except Exception:
        form.ended = False
    if not form.ended:
        raise _bad("the multipart body ends before its closing boundary")
    if not form.file_seen:
        raise _bad(f"no '{FILE_FIELD}' part in the form", "missing_file")


def _one(form: _Form, name: str, query: str | None, default: str, *, lo: int, hi: int) -> str:
    values = form.fields.get(name)
    value = values[-1] if values else query
    if value is None:
        value = default
    if not lo <= len(value) <= hi:
        raise ApiError(422, "invalid_field", f"{name} must be {lo} to {hi} characters")
    return value


def _tags(form: _Form, query: list[str] | None) -> list[str]:
    tags = list(query or [])
    for text in form.fields.get("tag", []):
        tags.append(text)
    for text in form.fields.get("tags", []):
        if text.lstrip().startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ApiError(422, "invalid_field", "tags: not a JSON array of strings") from None
            if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
                raise ApiError(422, "invalid_field", "tags: not a JSON array of strings")
            tags += parsed
        else:
            tags += [t.strip() for t in text.split(",") if t.strip()]
    if len(tags) > files.MAX_TAGS or not all(1 <= len(t) <= 200 for t in tags):
        raise ApiError(422, "invalid_field", f"at most {files.MAX_TAGS} tags of 1 to 200 characters")
    return tags


@router.post(
    "/upload",
    status_code=201,
    response_model=files.FileOut,
    summary="Upload a file (the seed's path): multipart/form-data with a 'file' part, or the raw body",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FILE_FIELD],
                        "properties": {
                            FILE_FIELD: {"type": "string", "format": "binary"},
                            "file_name": {"type": "string"},
                            "content_type": {"type": "string"},
                            "description": {"type": "string"},
                            "tags": {"type": "string", "description": "comma-separated, or a JSON array"},
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={
        400: {"description": "a form that cannot be read, or without a 'file' part"},
        413: {"description": "over the account's storage quota"},
    },
)
async def upload_form(
    request: Request,
    c: CtxDep,
    who: ClientDep,
    user: UserDep,
    file_name: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
    content_type: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    description: Annotated[str, Query(max_length=10_000)] = "",
    tag: Annotated[list[files.Tag] | None, Query(max_length=files.MAX_TAGS)] = None,
    replace: Annotated[bool, Query(description="once stored, purge the caller's other files of this name")] = False,
) -> files.FileOut:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data":
        return await files.upload(
            request, c, who, user, file_name=file_name or "upload",
            content_type=content_type or "application/octet-stream", description=description, tag=tag,
            replace=replace,
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad("multipart/form-data without a boundary")
    form = _Form()
    parser = _parser(boundary, form)
    with c.db.read() as conn:
        quota, used = conn.execute(
            sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user.id)
        ).one()
    room = max(0, quota - used)
    try:
        blob = await files.store_body(
            c, who, user, _file_part(request, parser, form), room=room, declared=None, used=used, quota=quota
        )
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the upload ended early; nothing was stored") from None
    try:
        name = _one(form, "file_name", file_name, form.file_name or "upload", lo=1, hi=1024)
        ctype = _one(form, "content_type", content_type, form.file_type or "application/octet-stream", lo=1, hi=255)
        desc = _one(form, "description", description, "", lo=0, hi=10_000)
        tags = _tags(form, tag)
    except ApiError:
        c.store.delete(blob_key(blob.blob_id))
        raise
    return files.commit(
        c, who, user, blob, file_name=name, content_type=ctype, description=desc, tags=tags, replace=replace,
        create_only=False, used=used, quota=quota,
    )
