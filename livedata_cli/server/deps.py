"""What every router shares: the app context, errors, the caller, the caller's objects, audit records, pages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol

import sqlalchemy as sa
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.config import ServerConfig
from livedata_cli.server.db import AnyRow
from livedata_cli.server.keys import ServerKeys
from livedata_cli.server.mail import Mailer
from livedata_cli.server.ratelimit import Limiter
from livedata_cli.server.security import Passwords, Tokens
from livedata_cli.stores import ObjectStore


class ApiError(Exception):
    """An expected failure: HTTP status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found(what: str = "file") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


UNAUTHORIZED = ("unauthorized", "missing, invalid or expired access token")


class AuditBatch(Protocol):
    """Audit records written in batches (``server/auditq.py``, with ``--audit-batch-ms``)."""

    def add(
        self, who: Client, user_id: str | None, action: str, object_type: str | None, object_id: str | None
    ) -> None: ...

    async def run(self) -> None: ...


@dataclass
class Context:
    """The parts a server process composes once, reachable from every request."""

    config: ServerConfig
    db: db.Database
    store: ObjectStore
    keys: ServerKeys
    passwords: Passwords
    tokens: Tokens
    limiter: Limiter
    mailer: Mailer
    audit_queue: AuditBatch | None = None


def ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


CtxDep = Annotated[Context, Depends(ctx)]


@dataclass(frozen=True)
class Client:
    ip: str
    user_agent: str
    request_id: str


def client(request: Request) -> Client:
    return Client(
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", "")[:512],
        request_id=request.scope.get("state", {}).get("request_id", ""),
    )


ClientDep = Annotated[Client, Depends(client)]


@dataclass(frozen=True)
class User:
    id: str
    email: str
    session_id: str
    is_admin: bool


SEEN_EVERY = 60.0  # seconds: last_seen_at is written at most this often per session


def touch(conn: Connection, session_id: str, ip: str, now: float | None = None) -> None:
    """Record the session as seen now from ``ip``, unless it was within the last minute."""
    now = time.time() if now is None else now
    s = db.sessions.c
    conn.execute(
        db.sessions.update()
        .where(
            s.id == session_id, sa.or_(s.last_seen_at.is_(None), s.last_seen_at < now - SEEN_EVERY)
        )
        .values(last_seen_at=now, last_ip=ip[:64])
    )


_bearer = HTTPBearer(auto_error=False, description="an access token from /auth/login")


def current_user(
    request: Request,
    c: CtxDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> User:
    claims = c.tokens.decode(credentials.credentials) if credentials else None
    if claims is None:
        raise ApiError(401, *UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    with c.db.read() as conn:
        row = conn.execute(
            sa.select(
                db.users.c.id, db.users.c.email, db.users.c.is_admin, db.sessions.c.revoked_at, db.sessions.c.last_seen_at
            )
            .join(db.sessions, db.sessions.c.user_id == db.users.c.id)
            .where(db.users.c.id == claims.user_id, db.sessions.c.id == claims.session_id)
        ).first()
    if row is None or row.revoked_at is not None:
        raise ApiError(401, *UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    now = time.time()
    if row.last_seen_at is None or row.last_seen_at < now - SEEN_EVERY:  # a write once a minute, not per request
        with c.db.write() as conn:
            touch(conn, claims.session_id, client(request).ip, now)
    request.scope.setdefault("state", {})["user_id"] = row.id
    return User(id=row.id, email=row.email, session_id=claims.session_id, is_admin=bool(row.is_admin))


UserDep = Annotated[User, Depends(current_user)]


# -- the caller's objects ------------------------------------------------------------
#
# A route that works on one of the caller's objects names it in its signature
# (``file: OwnedFile``).  The dependency binds the path's id to the caller;
# the route reads the row with ``.row(conn)`` inside its own transaction, so
# the ownership check and the change it guards commit together.  An id of
# another account answers 404, exactly as an id that never existed.


class Owned:
    """An id from the request, bound to the account that must own it."""

    table: ClassVar[sa.Table]
    what: ClassVar[str]

    def __init__(self, user: User, id: str) -> None:
        self.user = user
        self.id = id

    def _select(self) -> sa.Select[Any]:
        return sa.select(self.table).where(self.table.c.id == self.id, self.table.c.owner_id == self.user.id)

    def _first(self, conn: Connection, q: sa.Select[Any]) -> AnyRow:
        row = conn.execute(q).first()
        if row is None:
            raise not_found(self.what)
        return row

    def row(self, conn: Connection) -> AnyRow:
        """The object's row, or 404 (also when it is another account's)."""
        return self._first(conn, self._select())


class FileRef(Owned):
    table = db.files
    what = "file"

    def row(self, conn: Connection, *, deleted: bool | None = False) -> AnyRow:
        """The file's row: a live one (``deleted=False``), a trashed one (``True``) or either (``None``)."""
        q = self._select()
        if deleted is False:
            q = q.where(db.files.c.deleted_at.is_(None))
        elif deleted is True:
            q = q.where(db.files.c.deleted_at.is_not(None))
        return self._first(conn, q)


class ShareRef(Owned):
    table = db.shares
    what = "share"


class ConversionRef(Owned):
    table = db.conversions
    what = "conversion"


class UploadRef(Owned):
    table = db.uploads
    what = "file"


def _owned_file(file_id: str, user: UserDep) -> FileRef:
    return FileRef(user, file_id)


def _owned_share(share_id: str, user: UserDep) -> ShareRef:
    return ShareRef(user, share_id)


def _owned_conversion(job_id: str, user: UserDep) -> ConversionRef:
    return ConversionRef(user, job_id)


def _owned_upload(upload_id: str, user: UserDep) -> UploadRef:
    return UploadRef(user, upload_id)


OwnedFile = Annotated[FileRef, Depends(_owned_file)]
OwnedShare = Annotated[ShareRef, Depends(_owned_share)]
OwnedConversion = Annotated[ConversionRef, Depends(_owned_conversion)]
OwnedUpload = Annotated[UploadRef, Depends(_owned_upload)]


def audit(
    conn: Connection,
    who: Client,
    user_id: str | None,
    action: str,
    object_type: str | None = None,
    object_id: str | None = None,
    status: str = "ok",
) -> None:
    """One audit record: who (account, IP, user agent), what, on which object, with which outcome."""
    conn.execute(
        db.audit_logs.insert().values(
            user_id=user_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            ip=who.ip[:64],
            user_agent=who.user_agent,
            request_id=who.request_id[:64],
            status=status,
            created_at=time.time(),
        )
    )


class Page(BaseModel):
    page: int
    per_page: int
    total: int


@dataclass(frozen=True)
class PageArgs:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def page_args(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    per_page: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
) -> PageArgs:
    return PageArgs(page, per_page)


PageDep = Annotated[PageArgs, Depends(page_args)]
