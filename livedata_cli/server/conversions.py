"""``/api/v1/conversions``: a job queue whose workers are the account's own trusted clients.

The server cannot convert (it holds no file key); it stores jobs and hands
each to one claimant at a time.  A claim is a lease: a worker that dies
leaves its job to be claimed again once the lease runs out.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.db import AnyRow
from livedata_cli.server.deps import (
    ApiError,
    ClientDep,
    ConversionRef,
    CtxDep,
    FileRef,
    OwnedConversion,
    Page,
    PageDep,
    UserDep,
    audit,
)
from livedata_cli.server.security import new_id

router = APIRouter(prefix="/conversions", tags=["conversions"])

# What the project's converters produce (see `livedata convert formats` on a worker).
FORMATS: dict[str, list[str]] = {
    "image": ["jpg", "png", "webp", "gif", "tiff", "bmp"],
    "document": ["pdf", "docx", "odt", "html", "md", "txt", "rtf"],
    "spreadsheet": ["xlsx", "ods", "csv"],
    "presentation": ["pptx", "odp"],
    "audio": ["mp3", "ogg", "wav", "flac"],
    "video": ["mp4", "webm"],
}
ALL_FORMATS = sorted({f for fs in FORMATS.values() for f in fs})
MAX_ATTEMPTS = 3


class ConversionCreate(BaseModel):
    file_id: Annotated[str, Field(max_length=64)]
    target_format: Annotated[str, Field(max_length=32)]
    options: Annotated[dict[str, Any], Field(max_length=50)] = {}


class Conversion(BaseModel):
    id: str
    file_id: str
    target_format: str
    options: dict[str, Any]
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    attempts: int
    worker: str | None
    lease_until: float | None
    result_file_id: str | None
    error: str | None
    created_at: float
    updated_at: float


class ConversionList(Page):
    items: list[Conversion]


class ClaimBody(BaseModel):
    worker: Annotated[str, Field(min_length=1, max_length=200)]
    formats: Annotated[list[str] | None, Field(max_length=100)] = None
    lease_seconds: Annotated[int | None, Field(ge=10, le=24 * 3600)] = None


class ProgressBody(BaseModel):
    worker: Annotated[str, Field(min_length=1, max_length=200)]
    progress: Annotated[float, Field(ge=0, le=1)]


class CompleteBody(BaseModel):
    worker: Annotated[str, Field(min_length=1, max_length=200)]
    result_file_id: Annotated[str | None, Field(max_length=64)] = None
    error: Annotated[str | None, Field(max_length=4000)] = None


class Formats(BaseModel):
    formats: dict[str, list[str]]


def _out(row: AnyRow) -> Conversion:
    return Conversion(
        id=row.id,
        file_id=row.file_id,
        target_format=row.target_format,
        options=json.loads(row.options or "{}"),
        status=row.status,
        progress=row.progress,
        attempts=row.attempts,
        worker=row.worker,
        lease_until=row.lease_until,
        result_file_id=row.result_file_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("/formats", response_model=Formats, summary="Target formats a job may ask for")
def formats() -> Formats:
    return Formats(formats=FORMATS)


@router.post("", status_code=201, response_model=Conversion, summary="Queue a conversion of one of your files")
def create(body: ConversionCreate, c: CtxDep, user: UserDep, who: ClientDep) -> Conversion:
    fmt = body.target_format.lower().lstrip(".")
    if fmt not in ALL_FORMATS:
        raise ApiError(422, "unknown_format", f"unknown target format {fmt!r}; see /conversions/formats")
    options = json.dumps(body.options, separators=(",", ":"))
    if len(options) > 16_000:
        raise ApiError(422, "options_too_large", "options are limited to 16 kB of JSON")
    now = time.time()
    jid = new_id()
    with c.db.write() as conn:
        FileRef(user, body.file_id).row(conn)
        conn.execute(
            db.conversions.insert().values(
                id=jid,
                owner_id=user.id,
                file_id=body.file_id,
                target_format=fmt,
                options=options,
                status="queued",
                created_at=now,
                updated_at=now,
            )
        )
        audit(conn, who, user.id, "conversion.create", "conversion", jid)
        return _out(ConversionRef(user, jid).row(conn))


@router.get("", response_model=ConversionList, summary="Your conversion jobs, newest first")
def list_jobs(c: CtxDep, user: UserDep, page: PageDep) -> ConversionList:
    q = sa.select(db.conversions).where(db.conversions.c.owner_id == user.id)
    with c.db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(
            q.order_by(db.conversions.c.created_at.desc(), db.conversions.c.id)
            .limit(page.per_page)
            .offset(page.offset)
        ).all()
    return ConversionList(page=page.page, per_page=page.per_page, total=total, items=[_out(r) for r in rows])


@router.post(
    "/claim",
    response_model=Conversion,
    summary="Claim the oldest queued job (or one whose lease ran out); 204 when none",
    responses={204: {"description": "nothing to do"}},
)
def claim(body: ClaimBody, c: CtxDep, user: UserDep, who: ClientDep) -> Conversion | Response:
    now = time.time()
    lease = body.lease_seconds or c.config.conversion_lease
    t = db.conversions.c
    claimable = sa.or_(
        t.status == "queued", sa.and_(t.status == "running", t.lease_until < now, t.attempts < MAX_ATTEMPTS)
    )
    q = sa.select(t.id).where(t.owner_id == user.id, claimable)
    if body.formats is not None:
        q = q.where(t.target_format.in_([f.lower() for f in body.formats]))
    with c.db.read() as conn:
        candidates = list(conn.scalars(q.order_by(t.created_at, t.id).limit(10)))
    for jid in candidates:
        with c.db.write() as conn:
            # Compare-and-set: of several workers racing for a job, exactly one row update succeeds.
            won = conn.execute(
                db.conversions.update()
                .where(t.id == jid, claimable)
                .values(
                    status="running",
                    worker=body.worker,
                    lease_until=now + lease,
                    attempts=t.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
            if won == 1:
                audit(conn, who, user.id, "conversion.claim", "conversion", jid)
                return _out(ConversionRef(user, jid).row(conn))
    return Response(status_code=204)


def _held(conn: Connection, job: ConversionRef, worker: str) -> AnyRow:
    row = job.row(conn)
    if row.status != "running" or row.worker != worker:
        raise ApiError(409, "not_claimed", "this worker does not hold the job's lease")
    return row


@router.get("/{job_id}", response_model=Conversion, summary="A job's status")
def status(job: OwnedConversion, c: CtxDep) -> Conversion:
    with c.db.read() as conn:
        return _out(job.row(conn))


@router.post("/{job_id}/progress", response_model=Conversion, summary="Report progress and extend the lease")
def progress(job: OwnedConversion, body: ProgressBody, c: CtxDep) -> Conversion:
    now = time.time()
    with c.db.write() as conn:
        _held(conn, job, body.worker)
        conn.execute(
            db.conversions.update()
            .where(db.conversions.c.id == job.id)
            .values(progress=body.progress, lease_until=now + c.config.conversion_lease, updated_at=now)
        )
        return _out(job.row(conn))


@router.post("/{job_id}/complete", response_model=Conversion, summary="Finish a claimed job: a result file or an error")
def complete(job: OwnedConversion, body: CompleteBody, c: CtxDep, user: UserDep, who: ClientDep) -> Conversion:
    if (body.result_file_id is None) == (body.error is None):
        raise ApiError(422, "result_or_error", "give exactly one of result_file_id and error")
    now = time.time()
    with c.db.write() as conn:
        _held(conn, job, body.worker)
        if body.result_file_id is not None:
            FileRef(user, body.result_file_id).row(conn)
        conn.execute(
            db.conversions.update()
            .where(db.conversions.c.id == job.id)
            .values(
                status="done" if body.error is None else "failed",
                result_file_id=body.result_file_id,
                error=body.error,
                progress=1.0 if body.error is None else db.conversions.c.progress,
                lease_until=None,
                updated_at=now,
            )
        )
        audit(conn, who, user.id, "conversion.complete", "conversion", job.id, "ok" if body.error is None else "failed")
        return _out(job.row(conn))


@router.delete("/{job_id}", status_code=204, summary="Cancel a job that has not finished")
def cancel(job: OwnedConversion, c: CtxDep, user: UserDep, who: ClientDep) -> Response:
    with c.db.write() as conn:
        job.row(conn)
        conn.execute(
            db.conversions.update()
            .where(db.conversions.c.id == job.id, db.conversions.c.status.in_(["queued", "running"]))
            .values(status="cancelled", lease_until=None, updated_at=time.time())
        )
        audit(conn, who, user.id, "conversion.cancel", "conversion", job.id)
    return Response(status_code=204)
