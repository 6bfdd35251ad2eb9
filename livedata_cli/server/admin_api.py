"""``/api/v1/admin/users``: administrators list accounts and disable or enable them.

Two roles: ``admin`` (``users.is_admin``) and ``user``.  The admin API shows
what an operator needs to run the service (email, role, dates, storage used,
file count) and nothing of the files themselves: every file, share and
conversion route names the caller as owner, so an administrator's token on
another account's file id is a 404 like anyone else's.

Disabling an account ends its sessions at once (their access and refresh
tokens stop working) and refuses its logins until it is enabled again.  The
operator commands ``livedata server users ...`` (``server/operator.py``) run
the same functions on the database directly.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.auth import revoke_sessions
from livedata_cli.server.db import AnyRow
from livedata_cli.server.deps import (
    ApiError,
    Client,
    ClientDep,
    Context,
    CtxDep,
    Page,
    PageDep,
    User,
    UserDep,
    audit,
    not_found,
)

router = APIRouter(prefix="/admin", tags=["admin"])



class AdminUser(BaseModel):
    id: str
    email: str
    role: str
    created_at: float
    disabled: bool
    disabled_at: float | None
    used_bytes: int
    files: int


class AdminUserList(Page):
    items: list[AdminUser]


def role_of(is_admin: bool) -> str:
    return "admin" if is_admin else "user"


def _query() -> sa.Select[Any]:
    u, f = db.users.c, db.files.c
    count = (
        sa.select(sa.func.count()).where(f.owner_id == u.id).correlate(db.users).scalar_subquery()
    )
    return sa.select(
        u.id, u.email, u.is_admin, u.created_at, u.disabled_at, u.used_bytes, count.label("files")
    )


def _item(row: AnyRow) -> AdminUser:
    return AdminUser(
        id=row.id,
        email=row.email,
        role=role_of(row.is_admin),
        created_at=row.created_at,
        disabled=row.disabled_at is not None,
        disabled_at=row.disabled_at,
        used_bytes=row.used_bytes,
        files=row.files,
    )


def list_users(conn: Connection, *, limit: int | None = None, offset: int = 0) -> list[AdminUser]:
    """Accounts by email."""
    q = _query().order_by(db.users.c.email).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [_item(r) for r in conn.execute(q)]


def find_user(
    conn: Connection, *, user_id: str | None = None, email: str | None = None
) -> AdminUser | None:
    u = db.users.c
    from livedata_cli.server.emails import normalize

    cond = u.id == user_id if user_id is not None else u.email == normalize(email or "")
    row = conn.execute(_query().where(cond)).first()
    return _item(row) if row else None


def set_disabled(conn: Connection, user_id: str, disabled: bool) -> None:
    """Disable (and end every session of) or enable an account."""
    conn.execute(
        db.users.update()
        .where(db.users.c.id == user_id)
        .values(disabled_at=time.time() if disabled else None)
    )
    if disabled:
        revoke_sessions(conn, user_id, "account_disabled")


def require_admin(user: UserDep) -> User:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "only administrators may do this")
    return user


AdminDep = Annotated[User, Depends(require_admin)]


@router.get("/users", response_model=AdminUserList, summary="Every account (administrators only)")
def admin_list(c: CtxDep, admin: AdminDep, page: PageDep) -> AdminUserList:
    with c.db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(db.users)).scalar_one()
        items = list_users(conn, limit=page.per_page, offset=page.offset)
    return AdminUserList(page=page.page, per_page=page.per_page, total=total, items=items)


def _change(c: Context, admin: User, who: Client, user_id: str, disabled: bool) -> AdminUser:
    if disabled and user_id == admin.id:
        raise ApiError(409, "own_account", "you cannot disable your own account")
    with c.db.write() as conn:
        if find_user(conn, user_id=user_id) is None:
            raise not_found("account")
        set_disabled(conn, user_id, disabled)
        audit(
            conn,
            who,
            admin.id,
            "admin.user_disable" if disabled else "admin.user_enable",
            "user",
            user_id,
        )
        found = find_user(conn, user_id=user_id)
    assert found is not None
    return found


@router.post(
    "/users/{user_id}/disable",
    response_model=AdminUser,
    summary="Disable an account; its sessions end",
)
def admin_disable(user_id: str, c: CtxDep, admin: AdminDep, who: ClientDep) -> AdminUser:
    return _change(c, admin, who, user_id, True)


@router.post(
    "/users/{user_id}/enable", response_model=AdminUser, summary="Enable a disabled account"
)
def admin_enable(user_id: str, c: CtxDep, admin: AdminDep, who: ClientDep) -> AdminUser:
    return _change(c, admin, who, user_id, False)
