"""``/api/v1/users/me``: profile, storage, password change, audit logs."""

from __future__ import annotations

import time
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Query, Response
from pydantic import BaseModel, Field

from livedata_cli.server import db, devices, reauth
from livedata_cli.server.auth import Name, Password, Profile, profile_of, revoke_sessions
from livedata_cli.server.db import public_keys
from livedata_cli.server.deps import (
    ClientDep,
    CtxDep,
    Page,
    PageDep,
    UserDep,
    audit,
    not_found,
)

router = APIRouter(prefix="/users", tags=["users"])

class ProfilePatch(BaseModel):
    first_name: Name | None = None
    last_name: Name | None = None


class Storage(BaseModel):
    used_bytes: int
    quota_bytes: int
    free_bytes: int
    files: int


class PasswordChange(BaseModel):
    current_password: Annotated[str, Field(max_length=1024)]
    new_password: Password
    code: Annotated[str | None, Field(max_length=16, description="a current TOTP code, when MFA is on")] = None
    recovery_code: Annotated[str | None, Field(max_length=64, description="or a recovery code")] = None


class AuditEntry(BaseModel):
    id: int
    action: str
    object_type: str | None
    object_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    status: str
    created_at: float


class AuditList(Page):
    items: list[AuditEntry]


@router.get("/me", response_model=Profile, summary="Your profile")
@router.get("/profile", response_model=Profile, summary="Your profile (the seed's path)")
def me(c: CtxDep, user: UserDep, who: ClientDep) -> Profile:
    with c.db.write() as conn:
        row = conn.execute(sa.select(db.users).where(db.users.c.id == user.id)).one()
        audit(conn, who, user.id, "account.read", "user", user.id)
    return profile_of(row)


@router.patch("/me", response_model=Profile, summary="Change your name")
@router.put("/profile", response_model=Profile, summary="Change your name (the seed's path)")
def patch_me(body: ProfilePatch, c: CtxDep, user: UserDep, who: ClientDep) -> Profile:
    values: dict[str, object] = {"updated_at": time.time()}
    if body.first_name is not None:
        values["first_name"] = body.first_name
    if body.last_name is not None:
        values["last_name"] = body.last_name
    with c.db.write() as conn:
        conn.execute(db.users.update().where(db.users.c.id == user.id).values(**values))
        audit(conn, who, user.id, "account.update", "user", user.id)
        row = conn.execute(sa.select(db.users).where(db.users.c.id == user.id)).one()
    return profile_of(row)


@router.get("/me/storage", response_model=Storage, summary="Quota used and total")
@router.get("/storage", response_model=Storage, summary="Quota used and total (the seed's path)")
def storage(c: CtxDep, user: UserDep) -> Storage:
    with c.db.read() as conn:
        quota, used = conn.execute(
            sa.select(db.users.c.quota_bytes, db.users.c.used_bytes).where(db.users.c.id == user.id)
        ).one()
        count = conn.execute(
            sa.select(sa.func.count()).select_from(db.files).where(db.files.c.owner_id == user.id)
        ).scalar_one()
    return Storage(used_bytes=used, quota_bytes=quota, free_bytes=max(0, quota - used), files=count)


@router.post("/me/password", status_code=204, summary="Change your password; other sessions end")
@router.post("/password-change", status_code=204, summary="Change your password (the seed's path)")
def change_password(
    body: PasswordChange, c: CtxDep, user: UserDep, who: ClientDep, tasks: BackgroundTasks
) -> Response:
    reauth.confirm(
        c, who, user.id, user.email, "account.password", password=body.current_password, code=body.code,
        recovery_code=body.recovery_code,
    )
    new_hash = c.passwords.hash(body.new_password)
    with c.db.write() as conn:
        now = time.time()
        conn.execute(db.users.update().where(db.users.c.id == user.id).values(password_hash=new_hash, updated_at=now))
        reauth.end_reset_tokens(conn, user.id, now)
        revoke_sessions(conn, user.id, "password_change", keep=user.session_id)
        audit(conn, who, user.id, "account.password", "user", user.id)
        device = devices.of_session(conn, user.session_id, who)
    devices.notify(c, tasks, user.email, "The password was changed", device)
    return Response(status_code=204)


@router.get("/me/audit-logs", response_model=AuditList, summary="What happened to your account and files, newest first")
@router.get("/audit-logs", response_model=AuditList, summary="Your audit records (the seed's path)")
def audit_logs(
    c: CtxDep,
    user: UserDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64, description="only this action")] = None,
) -> AuditList:
    t = db.audit_logs.c
    q = sa.select(db.audit_logs).where(t.user_id == user.id)
    if action:
        q = q.where(t.action == action)
    with c.db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(t.id.desc()).limit(page.per_page).offset(page.offset)).all()
    return AuditList(
        page=page.page,
        per_page=page.per_page,
        total=total,
        items=[
            AuditEntry(
                id=r.id,
                action=r.action,
                object_type=r.object_type,
                object_id=r.object_id,
                ip=r.ip,
                user_agent=r.user_agent,
                request_id=r.request_id,
                status=r.status,
                created_at=r.created_at,
            )
            for r in rows
        ],
    )


class PublicKeyIn(BaseModel):
    public_key: Annotated[str, Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$", description="X25519, hex")]
    signing_key: Annotated[
        str | None,
        Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$", description="Ed25519 (shares' signatures), hex"),
    ] = None


class PublicKeyOut(BaseModel):
    email: str
    public_key: str
    signing_key: str | None = None


@router.put("/me/public-key", status_code=204, summary="Publish your X25519 public key (for shares to you)")
def put_public_key(body: PublicKeyIn, c: CtxDep, user: UserDep, who: ClientDep) -> Response:
    with c.db.write() as conn:
        known = conn.execute(
            sa.select(public_keys.c.public_key, public_keys.c.signing_key).where(public_keys.c.user_id == user.id)
        ).first()
        if known is not None and tuple(known) == (body.public_key, body.signing_key):
            return Response(status_code=204)  # published again by a client: nothing changes
        values = {"public_key": body.public_key, "signing_key": body.signing_key, "updated_at": time.time()}
        if known is None:
            conn.execute(public_keys.insert().values(user_id=user.id, **values))
        else:
            conn.execute(public_keys.update().where(public_keys.c.user_id == user.id).values(**values))
        audit(conn, who, user.id, "account.public_key", "user", user.id)
    return Response(status_code=204)


@router.get("/public-key", response_model=PublicKeyOut, summary="Another account's public key, by email")
def get_public_key(
    c: CtxDep, user: UserDep, email: Annotated[str, Query(max_length=320, description="the account's email")]
) -> PublicKeyOut:
    with c.db.read() as conn:
        row = conn.execute(
            sa.select(db.users.c.email, public_keys.c.public_key, public_keys.c.signing_key)
            .join(public_keys, public_keys.c.user_id == db.users.c.id)
            .where(sa.func.lower(db.users.c.email) == email.strip().lower())
        ).first()
    if row is None:
        raise not_found("public key")
    return PublicKeyOut(email=row.email, public_key=row.public_key, signing_key=row.signing_key)
