"""``/api/v1/shares``: links to one file, with expiry, a download limit and an optional password verifier.

The server never sees a file key: the link's secret stays in its URL
fragment, and the client stores here only an opaque, already encrypted
``manifest``.  A password-protected share holds an Argon2id hash of a
*verifier* the client derives from the password; a download must present
the verifier, wrong ones are rate limited and lock the share after a few.

Owner endpoints answer 404 for another user's share id; the public
endpoints (``/public``, ``/download``) are what a link holder uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from livedata_cli.server import clock, db
from livedata_cli.server.db import AnyRow, share_recipients
from livedata_cli.server.deps import (
    ApiError,
    ClientDep,
    Context,
    CtxDep,
    FileRef,
    OwnedShare,
    Page,
    PageDep,
    ShareRef,
    UserDep,
    audit,
    not_found,
)
from livedata_cli.server.files import download_response, parse_range
from livedata_cli.server.ratelimit import RateLimited
from livedata_cli.server.security import new_id

router = APIRouter(prefix="/shares", tags=["shares"])

class ShareCreate(BaseModel):
    file_id: Annotated[str, Field(max_length=64)]
    expires_in: Annotated[int | None, Field(ge=1, le=366 * 24 * 3600, description="seconds from now")] = 7 * 24 * 3600
    max_downloads: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    password_verifier: Annotated[str | None, Field(min_length=16, max_length=512)] = None
    manifest: Annotated[str, Field(max_length=65_536, description="opaque, client-encrypted")] = ""
    recipient_email: Annotated[
        str | None, Field(max_length=320, description="only this account may list and fetch the share")
    ] = None
    id: Annotated[
        str | None,
        Field(pattern="^[0-9a-f]{32}$", description="the share's id, chosen by the client (a signed share binds it)"),
    ] = None


class ShareOut(BaseModel):
    id: str
    file_id: str
    created_at: float
    expires_at: float | None
    max_downloads: int | None
    downloads: int
    password_protected: bool
    state: str


class ShareList(Page):
    items: list[ShareOut]


class IncomingShare(BaseModel):
    id: str
    owner_email: str
    size: int
    created_at: float
    expires_at: float | None
    state: str
    manifest: str


class IncomingList(Page):
    items: list[IncomingShare]


class SharePublic(BaseModel):
    id: str
    size: int
    expires_at: float | None
    downloads_left: int | None
    password_protected: bool
    manifest: str


def _state(row: AnyRow, c: Context, now: float) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    if row.max_downloads is not None and row.downloads >= row.max_downloads:
        return "used_up"
    if row.password_verifier_hash and row.failed_attempts >= c.config.share_max_failures:
        return "locked"
    return "active"


def _out(row: AnyRow, c: Context) -> ShareOut:
    return ShareOut(
        id=row.id,
        file_id=row.file_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_downloads=row.max_downloads,
        downloads=row.downloads,
        password_protected=bool(row.password_verifier_hash),
        state=_state(row, c, clock.now()),
    )


def _holds_verifier(manifest: str, verifier: str) -> bool:
    import base64
    import binascii

    try:
        raw, needle = base64.b64decode(manifest, validate=True), bytes.fromhex(verifier)
    except (ValueError, binascii.Error):
        return False
    return needle in raw or verifier.encode() in raw


@router.post("", status_code=201, response_model=ShareOut, summary="Share one of your files")
def create_share(body: ShareCreate, c: CtxDep, user: UserDep, who: ClientDep) -> ShareOut:
    if body.password_verifier and body.recipient_email is not None:
        # A share to an account opens with the recipient's login and keys, and the
        # incoming-share routes ask no password: taking one would promise what is not kept.
        raise ApiError(422, "password_with_recipient", "a share to an account takes no password")
    if body.password_verifier and _holds_verifier(body.manifest, body.password_verifier):
        # The server keeps only a hash of the verifier: a manifest holding it in clear
        # (made by an older client) would defeat that.
        raise ApiError(422, "verifier_in_manifest", "the manifest holds the password verifier: update livedata")
    verifier_hash = c.passwords.hash(body.password_verifier) if body.password_verifier else None
    now = clock.now()
    sid = body.id or new_id()
    with c.db.write() as conn:
        FileRef(user, body.file_id).row(conn)
        if body.id is not None and conn.execute(sa.select(db.shares.c.id).where(db.shares.c.id == sid)).first():
            raise ApiError(409, "conflict", "a share with this id exists")
        if body.recipient_email is not None:
            recipient = conn.execute(
                sa.select(db.users.c.id).where(db.users.c.email == body.recipient_email.strip().lower())
            ).scalar()
            if recipient is None:
                raise not_found("recipient")
            conn.execute(share_recipients.insert().values(share_id=sid, recipient_id=recipient))
        conn.execute(
            db.shares.insert().values(
                id=sid,
                file_id=body.file_id,
                owner_id=user.id,
                manifest=body.manifest,
                password_verifier_hash=verifier_hash,
                expires_at=now + body.expires_in if body.expires_in else None,
                max_downloads=body.max_downloads,
                created_at=now,
            )
        )
        audit(conn, who, user.id, "share.create", "share", sid)
        return _out(ShareRef(user, sid).row(conn), c)


@router.get("", response_model=ShareList, summary="Your shares, newest first")
def list_shares(c: CtxDep, user: UserDep, page: PageDep) -> ShareList:
    with c.db.read() as conn:
        q = sa.select(db.shares).where(db.shares.c.owner_id == user.id)
        total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(
            q.order_by(db.shares.c.created_at.desc(), db.shares.c.id).limit(page.per_page).offset(page.offset)
        ).all()
    return ShareList(page=page.page, per_page=page.per_page, total=total, items=[_out(r, c) for r in rows])


def _incoming_query(user_id: str) -> sa.Select[Any]:
    return (
        sa.select(db.shares, db.files.c.size, db.users.c.email.label("owner_email"))
        .join(share_recipients, share_recipients.c.share_id == db.shares.c.id)
        .join(db.files, db.files.c.id == db.shares.c.file_id)
        .join(db.users, db.users.c.id == db.shares.c.owner_id)
        .where(share_recipients.c.recipient_id == user_id, db.files.c.deleted_at.is_(None))
    )


@router.get("/incoming", response_model=IncomingList, summary="Shares addressed to you, newest first")
def incoming_shares(c: CtxDep, user: UserDep, page: PageDep) -> IncomingList:
    with c.db.read() as conn:
        q = _incoming_query(user.id)
        total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(
            q.order_by(db.shares.c.created_at.desc(), db.shares.c.id).limit(page.per_page).offset(page.offset)
        ).all()
    now = clock.now()
    items = [
        IncomingShare(
            id=r.id, owner_email=r.owner_email, size=r.size, created_at=r.created_at,
            expires_at=r.expires_at, state=_state(r, c, now), manifest=r.manifest,
        )
        for r in rows
    ]
    return IncomingList(page=page.page, per_page=page.per_page, total=total, items=items)


@router.get(
    "/incoming/{share_id}/download",
    summary="Download a share addressed to you (client-encrypted bytes); counts against the limit",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 410: {"description": "expired, used up, revoked"}},
)
def incoming_download(request: Request, share_id: str, c: CtxDep, user: UserDep, who: ClientDep) -> StreamingResponse:
    with c.db.read() as conn:
        row = conn.execute(_incoming_query(user.id).where(db.shares.c.id == share_id)).first()
    if row is None:
        raise not_found("share")
    state = _state(row, c, clock.now())
    if state != "active":
        raise ApiError(410, f"share_{state}", f"this share is {state.replace('_', ' ')}")
    with c.db.write() as conn:
        q = db.shares.update().where(db.shares.c.id == share_id, db.shares.c.revoked_at.is_(None))
        if row.max_downloads is not None:
            q = q.where(db.shares.c.downloads < db.shares.c.max_downloads)
        if conn.execute(q.values(downloads=db.shares.c.downloads + 1)).rowcount != 1:
            raise ApiError(410, "share_used_up", "this share is used up")
        file_row = conn.execute(sa.select(db.files).where(db.files.c.id == row.file_id)).one()
        audit(conn, who, user.id, "share.receive", "share", share_id)
        audit(conn, who, row.owner_id, "share.download", "share", share_id)
    return download_response(c, file_row, request.headers.get("range"))


@router.get("/{share_id}", response_model=ShareOut, summary="One of your shares")
def get_share(share: OwnedShare, c: CtxDep, user: UserDep, who: ClientDep) -> ShareOut:
    with c.db.write() as conn:
        row = share.row(conn)
        audit(conn, who, user.id, "share.read", "share", share.id)
        return _out(row, c)


@router.delete("/{share_id}", status_code=204, summary="Revoke a share")
def revoke_share(share: OwnedShare, c: CtxDep, user: UserDep, who: ClientDep) -> Response:
    with c.db.write() as conn:
        share.row(conn)
        conn.execute(
            db.shares.update()
            .where(db.shares.c.id == share.id, db.shares.c.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )
        audit(conn, who, user.id, "share.revoke", "share", share.id)
    return Response(status_code=204)


def _usable(c: Context, share_id: str, verifier: str | None, ip: str) -> AnyRow:
    """The share and its file if the link may be used now; the right error otherwise."""
    now = clock.now()
    with c.db.read() as conn:
        row = conn.execute(
            sa.select(db.shares, db.files.c.size, db.files.c.deleted_at.label("file_deleted"))
            .join(db.files, db.files.c.id == db.shares.c.file_id)
            .where(db.shares.c.id == share_id)
        ).first()
    if row is None or row.file_deleted is not None:
        raise not_found("share")
    with c.db.read() as conn:
        addressed = conn.execute(
            sa.select(share_recipients.c.share_id).where(share_recipients.c.share_id == share_id)
        ).first()
    if addressed is not None:  # only its recipient fetches it, signed in (/incoming)
        raise not_found("share")
    state = _state(row, c, now)
    if state != "active":
        raise ApiError(410, f"share_{state}", f"this share is {state.replace('_', ' ')}")
    if row.password_verifier_hash:
        limits = c.config.rate_limits
        try:
            c.limiter.hit("share_password", (limits.share_password, share_id), (limits.share_password_ip, ip))
        except RateLimited as e:
            raise ApiError(
                429, "rate_limited", f"too many attempts; retry in {e.retry_after}s", {"Retry-After": str(e.retry_after)}
            ) from None
        # An attempt is counted as failed before it is checked, and given back only when right: parallel
        # guesses cannot all read the same count and pass the lockout together.
        with c.db.write() as conn:
            reserved = conn.execute(
                db.shares.update()
                .where(db.shares.c.id == share_id, db.shares.c.failed_attempts < c.config.share_max_failures)
                .values(failed_attempts=db.shares.c.failed_attempts + 1)
            ).rowcount
        if reserved != 1:
            raise ApiError(410, "share_locked", "this share is locked")
        if not verifier or not c.passwords.verify(row.password_verifier_hash, verifier):
            raise ApiError(401, "share_password", "this share needs its password (wrong or missing verifier)")
        with c.db.write() as conn:
            conn.execute(
                db.shares.update()
                .where(db.shares.c.id == share_id)
                .values(failed_attempts=db.shares.c.failed_attempts - 1)
            )
    return row


VerifierHeader = Annotated[
    str | None, Header(alias="X-Share-Verifier", max_length=512, description="password verifier, if the share has one")
]


@router.get("/{share_id}/public", response_model=SharePublic, summary="What a link holder may see of a share")
def public_share(share_id: str, c: CtxDep, who: ClientDep, x_share_verifier: VerifierHeader = None) -> SharePublic:
    row = _usable(c, share_id, x_share_verifier, who.ip)
    return SharePublic(
        id=row.id,
        size=row.size,
        expires_at=row.expires_at,
        downloads_left=None if row.max_downloads is None else row.max_downloads - row.downloads,
        password_protected=bool(row.password_verifier_hash),
        manifest=row.manifest,
    )


@router.get(
    "/{share_id}/download",
    summary="Download a shared file's (client-encrypted) bytes; counts against the limit",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 410: {"description": "expired, used up, revoked"}},
)
def share_download(
    request: Request, share_id: str, c: CtxDep, who: ClientDep, x_share_verifier: VerifierHeader = None
) -> StreamingResponse:
    share = _usable(c, share_id, x_share_verifier, who.ip)
    range_header = request.headers.get("range")
    parse_range(range_header, share.size)  # an unsatisfiable range is a 416 before the download is counted
    with c.db.write() as conn:
        q = db.shares.update().where(db.shares.c.id == share_id, db.shares.c.revoked_at.is_(None))
        if share.max_downloads is not None:
            q = q.where(db.shares.c.downloads < db.shares.c.max_downloads)
        # Every request counts, ranged or not: otherwise ranges would be a way around the limit.
        if conn.execute(q.values(downloads=db.shares.c.downloads + 1)).rowcount != 1:
            raise ApiError(410, "share_used_up", "this share is used up")
        file_row = conn.execute(sa.select(db.files).where(db.files.c.id == share.file_id)).one()
        audit(conn, who, share.owner_id, "share.download", "share", share_id)
    response = download_response(c, file_row, range_header)
    response.body_iterator = _given_back_on_failure(response.body_iterator, c, share_id)
    return response


async def _given_back_on_failure(body: AsyncIterable[Any], c: Context, share_id: str) -> AsyncIterator[Any]:
    """The download's bytes; when the server fails to send them (a blob missing or damaged, the store
    unreachable), the download it counted is given back.  A client that goes away keeps it counted:
    otherwise cutting every download short would be a way around the limit."""
    try:
        async for chunk in body:
            yield chunk
    except Exception:

        def give_back() -> None:
            with c.db.write() as conn:
                conn.execute(
                    db.shares.update()
                    .where(db.shares.c.id == share_id, db.shares.c.downloads > 0)
                    .values(downloads=db.shares.c.downloads - 1)
                )

        await to_thread.run_sync(give_back)
        raise
