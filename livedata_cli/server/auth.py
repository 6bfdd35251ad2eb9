"""``/api/v1/auth``: register, login (with a TOTP challenge when MFA is on), refresh, logout, MFA, password reset.

Refresh tokens rotate: each use returns a new one and marks the old one
used; presenting a used one again means it leaked, so the whole session
(the token family) is revoked.  Access tokens name their session, so logout
ends them at once rather than at expiry.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from livedata_cli.server import db, devices, emails, reauth
from livedata_cli.server.deps import (
    ApiError,
    Client,
    ClientDep,
    Context,
    CtxDep,
    UserDep,
    audit,
    touch,
)
from livedata_cli.server.factors import (
    check_totp,
    limited,
    login_limit,
    mfa_limit,
    second_factor_ok,
)
from livedata_cli.server.ratelimit import RateLimited
from livedata_cli.server.security import (
    new_id,
    new_totp_secret,
    normalize_recovery,
    opaque_token,
    recovery_codes,
    token_hash,
    totp_uri,
)

router = APIRouter(prefix="/auth", tags=["auth"])
log = logging.getLogger("livedata.server")

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}$"
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=320)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]
Name = Annotated[str, Field(max_length=200)]
DISABLED = "this account is disabled; ask the server's administrator"


class RegisterBody(BaseModel):
    email: Email
    password: Password
    first_name: Name = ""
    last_name: Name = ""


class Profile(BaseModel):
    id: str
    email: str
    first_name: str
    last_name: str
    is_admin: bool
    mfa_enabled: bool
    created_at: float


class LoginBody(devices.DeviceFields):
    email: Annotated[str, Field(max_length=320)]
    password: Annotated[str, Field(max_length=1024)]


class TokenResponse(BaseModel):
    """OAuth 2.0's token response (RFC 6749 §5.1)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MfaChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int


class RefreshBody(BaseModel):
    refresh_token: Annotated[str, Field(max_length=200)]


class MfaSetup(BaseModel):
    secret: str
    otpauth_uri: str


CurrentPassword = Annotated[str, Field(max_length=1024, description="the account's current password")]


class PasswordBody(BaseModel):
    password: CurrentPassword


class CodeBody(BaseModel):
    code: Annotated[str, Field(max_length=16)]
    password: CurrentPassword


class RecoveryCodes(BaseModel):
    mfa_enabled: bool
    recovery_codes: list[str]


class ChallengeBody(devices.DeviceFields):
    """The device fields again, as sent with the login."""

    mfa_token: Annotated[str, Field(max_length=200)]
    code: Annotated[str | None, Field(max_length=16)] = None
    recovery_code: Annotated[str | None, Field(max_length=64)] = None


class DisableMfaBody(BaseModel):
    password: CurrentPassword
    code: Annotated[str | None, Field(max_length=64)] = None
    recovery_code: Annotated[str | None, Field(max_length=64, description="or a recovery code")] = None


class ResetRequestBody(BaseModel):
    email: Annotated[str, Field(max_length=320)]


class ResetConfirmBody(BaseModel):
    token: Annotated[str, Field(max_length=200)]
    new_password: Password


def profile_of(row: sa.Row[tuple[object, ...]] | sa.RowMapping) -> Profile:
    m = row._mapping if isinstance(row, sa.Row) else row
    return Profile(
        id=m["id"],
        email=m["email"],
        first_name=m["first_name"],
        last_name=m["last_name"],
        is_admin=bool(m["is_admin"]),
        mfa_enabled=bool(m["mfa_enabled"]),
        created_at=m["created_at"],
    )


def create_user(
    c: Context, conn: Connection, email: str, password_hash: str, first: str, last: str, *, admin: bool = False
) -> str:
    """Insert an account; a taken email is a 409, one with control or format characters a 422."""
    email = emails.normalize(email)
    why = emails.refusal(email)
    if why is not None:
        raise ApiError(422, "invalid_email", why)
    if conn.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).first():
        raise ApiError(409, "email_taken", "an account with this email already exists")
    uid = new_id()
    now = time.time()
    conn.execute(
        db.users.insert().values(
            id=uid,
            email=email,
            password_hash=password_hash,
            first_name=first,
            last_name=last,
            is_admin=admin,
            quota_bytes=c.config.quota_bytes,
            created_at=now,
            updated_at=now,
        )
    )
    return uid


def new_session(conn: Connection, user_id: str, device: devices.Device | None = None) -> str:
    session_id = new_id()
    now = time.time()
    columns = device.columns(now) if device else {}
    conn.execute(db.sessions.insert().values(id=session_id, user_id=user_id, created_at=now, **columns))
    return session_id


def issue_tokens(c: Context, conn: Connection, user_id: str, session_id: str | None = None) -> TokenResponse:
    """A new session (unless continuing one) and its first refresh token."""
    now = time.time()
    if session_id is None:
        session_id = new_session(conn, user_id)
    refresh = opaque_token()
    conn.execute(
        db.refresh_tokens.insert().values(
            token_hash=token_hash(refresh),
            session_id=session_id,
            created_at=now,
            expires_at=now + c.config.refresh_ttl,
        )
    )
    return TokenResponse(
        access_token=c.tokens.access(user_id, session_id),
        refresh_token=refresh,
        expires_in=c.config.access_ttl,
    )


def sign_in(
    c: Context, conn: Connection, who: Client, tasks: BackgroundTasks, user_id: str, body: devices.DeviceFields
) -> TokenResponse:
    """A completed login: a new session for the device, its trust carried over, mail when the device is new."""
    device = devices.device_of(who, body.device_name)
    trusted = devices.trusted_session(conn, user_id, body.device_trust)
    new = trusted is None and devices.is_new(conn, user_id, device)
    session_id = new_session(conn, user_id, device)
    if trusted is not None:
        devices.move_trust(conn, trusted, session_id)
    if new:
        email = conn.execute(sa.select(db.users.c.email).where(db.users.c.id == user_id)).scalar_one()
        devices.notify(c, tasks, email, "New sign-in from a device not seen before", device)
    return issue_tokens(c, conn, user_id, session_id)


def refuse_disabled(c: Context, who: Client, user_id: str, action: str) -> None:
    """For the login, MFA and refresh routes: a disabled account gets no tokens (403, audited)."""
    with c.db.write() as conn:
        disabled = conn.execute(
            sa.select(db.users.c.disabled_at).where(db.users.c.id == user_id)
        ).scalar()
        if disabled is not None:
            audit(conn, who, user_id, action, "user", user_id, "disabled")
    if disabled is not None:
        raise ApiError(403, "account_disabled", DISABLED)


def revoke_sessions(conn: Connection, user_id: str, reason: str, *, keep: str | None = None) -> None:
    """End the account's sessions (but ``keep``), and drop every device's trust."""
    devices.drop_trust(conn, user_id)
    q = db.sessions.update().where(db.sessions.c.user_id == user_id, db.sessions.c.revoked_at.is_(None))
    if keep is not None:
        q = q.where(db.sessions.c.id != keep)
    conn.execute(q.values(revoked_at=time.time(), revoked_reason=reason))


@router.post(
    "/register", status_code=201, response_model=Profile, summary="Create an account",
    responses={409: {"description": "the email has an account"}, 429: {"description": "rate limited"}},
)
def register(body: RegisterBody, c: CtxDep, who: ClientDep) -> Profile:
    email = emails.normalize(body.email)
    limits = c.config.rate_limits
    try:  # a registration tells whether an email has an account (409): counted, like a login
        c.limiter.hit("register", (limits.register, email), (limits.register_ip, who.ip))
    except RateLimited as e:
        raise limited(e) from None
    with c.db.read() as conn:  # a taken email costs no Argon2 hash
        if conn.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).first():
            raise ApiError(409, "email_taken", "an account with this email already exists")
    password_hash = c.passwords.hash(body.password)
    with c.db.write() as conn:
        uid = create_user(c, conn, body.email, password_hash, body.first_name, body.last_name)
        audit(conn, who, uid, "account.register", "user", uid)
        row = conn.execute(sa.select(db.users).where(db.users.c.id == uid)).one()
    return profile_of(row)


@router.post(
    "/login",
    response_model=TokenResponse | MfaChallenge,
    summary="Log in; with MFA on, returns a challenge to answer at /auth/mfa/challenge",
    responses={401: {"description": "wrong email or password"}, 429: {"description": "rate limited"}},
)
def login(body: LoginBody, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> TokenResponse | MfaChallenge:
    email = emails.normalize(body.email)
    login_limit(c, email, who.ip)
    with c.db.read() as conn:
        row = conn.execute(
            sa.select(db.users.c.id, db.users.c.password_hash, db.users.c.mfa_enabled).where(
                db.users.c.email == email
            )
        ).first()
    ok = c.passwords.verify(row.password_hash if row else None, body.password)
    if not ok or row is None:
        uid = row.id if row else None
        with c.db.write() as conn:
            audit(conn, who, uid, "auth.login", "user", uid, "failed")
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    refuse_disabled(c, who, row.id, "auth.login")
    with c.db.write() as conn:
        trusted = c.config.mfa_policy != "always" and devices.trusted_session(conn, row.id, body.device_trust)
        if row.mfa_enabled and not trusted:
            challenge = opaque_token()
            conn.execute(
                db.mfa_challenges.insert().values(
                    token_hash=token_hash(challenge),
                    user_id=row.id,
                    expires_at=time.time() + c.config.mfa_challenge_ttl,
                )
            )
            audit(conn, who, row.id, "auth.login", "user", row.id, "mfa_required")
            return MfaChallenge(mfa_token=challenge, expires_in=c.config.mfa_challenge_ttl)
        audit(conn, who, row.id, "auth.login", "user", row.id, "trusted_device" if row.mfa_enabled else "ok")
        return sign_in(c, conn, who, tasks, row.id, body)


@router.post("/refresh-token", response_model=TokenResponse, summary="Trade a refresh token for new tokens")
def refresh_token(body: RefreshBody, c: CtxDep, who: ClientDep) -> TokenResponse:
    now = time.time()
    reused = False
    with c.db.write() as conn:
        row = conn.execute(
            sa.select(db.refresh_tokens, db.sessions.c.user_id, db.sessions.c.revoked_at)
            .join(db.sessions, db.sessions.c.id == db.refresh_tokens.c.session_id)
            .where(db.refresh_tokens.c.token_hash == token_hash(body.refresh_token))
        ).first()
        if row is None:
            raise ApiError(401, "invalid_grant", "unknown refresh token")
        if row.used_at is not None:
            # A used token presented again: it leaked, or a client raced itself.
            # Either way the family can no longer be trusted.
            conn.execute(
                db.sessions.update()
                .where(db.sessions.c.id == row.session_id, db.sessions.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason="refresh_reuse", trust_hash=None, trusted_until=None)
            )
            audit(conn, who, row.user_id, "auth.refresh_reuse", "session", row.session_id, "revoked")
            reused = True
    if reused:
        raise ApiError(401, "invalid_grant", "refresh token already used: the session is revoked")
    refuse_disabled(c, who, row.user_id, "auth.refresh")
    with c.db.write() as conn:
        if row.revoked_at is not None or row.expires_at < now:
            raise ApiError(401, "invalid_grant", "refresh token expired or revoked")
        claimed = conn.execute(
            db.refresh_tokens.update()
            .where(db.refresh_tokens.c.token_hash == row.token_hash, db.refresh_tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            raise ApiError(401, "invalid_grant", "refresh token already used")
        audit(conn, who, row.user_id, "auth.refresh", "session", row.session_id)
        touch(conn, row.session_id, who.ip, now)
        return issue_tokens(c, conn, row.user_id, row.session_id)


@router.post("/logout", status_code=204, summary="End this session: its access and refresh tokens stop working")
def logout(user: UserDep, c: CtxDep, who: ClientDep) -> Response:
    with c.db.write() as conn:
        conn.execute(
            db.sessions.update()
            .where(db.sessions.c.id == user.session_id)
            .values(revoked_at=time.time(), revoked_reason="logout")
        )
        audit(conn, who, user.id, "auth.logout", "session", user.session_id)
    return Response(status_code=204)


@router.post("/mfa/setup", response_model=MfaSetup, summary="Start TOTP setup: a secret to confirm at /auth/mfa/verify")
def mfa_setup(body: PasswordBody, user: UserDep, c: CtxDep, who: ClientDep) -> MfaSetup:
    reauth.confirm(c, who, user.id, user.email, "mfa.setup", password=body.password)
    secret = new_totp_secret()
    with c.db.write() as conn:
        row = conn.execute(sa.select(db.users.c.mfa_enabled).where(db.users.c.id == user.id)).one()
        if row.mfa_enabled:
            raise ApiError(409, "mfa_enabled", "MFA is already on; disable it first to start again")
        conn.execute(
            db.users.update()
            .where(db.users.c.id == user.id)
            .values(mfa_secret=c.keys.seal("totp", secret.encode()), mfa_last_step=0, updated_at=time.time())
        )
        audit(conn, who, user.id, "mfa.setup", "user", user.id)
    return MfaSetup(secret=secret, otpauth_uri=totp_uri(secret, user.email))


@router.post("/mfa/verify", response_model=RecoveryCodes, summary="Confirm TOTP setup with a code; returns recovery codes")
def mfa_verify(body: CodeBody, user: UserDep, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> RecoveryCodes:
    reauth.confirm(c, who, user.id, user.email, "mfa.verify", password=body.password)
    mfa_limit(c, user.id, who.ip)
    with c.db.write() as conn:
        enabled = conn.execute(sa.select(db.users.c.mfa_enabled).where(db.users.c.id == user.id)).scalar_one()
        if enabled:
            raise ApiError(409, "mfa_enabled", "MFA is already on")
        ok = check_totp(c, conn, user.id, body.code)
        if not ok:
            audit(conn, who, user.id, "mfa.verify", "user", user.id, "failed")
    if not ok:  # 403: the access token is fine, only the code is wrong
        raise ApiError(403, "invalid_code", "wrong or already used code")
    with c.db.write() as conn:
        codes = recovery_codes()
        conn.execute(db.recovery_codes.delete().where(db.recovery_codes.c.user_id == user.id))
        conn.execute(
            db.recovery_codes.insert(),
            [{"code_hash": token_hash(normalize_recovery(x)), "user_id": user.id} for x in codes],
        )
        conn.execute(db.users.update().where(db.users.c.id == user.id).values(mfa_enabled=True))
        audit(conn, who, user.id, "mfa.enable", "user", user.id)
        device = devices.of_session(conn, user.session_id, who)
    devices.notify(c, tasks, user.email, "Two-factor login (MFA) was turned on", device)
    return RecoveryCodes(mfa_enabled=True, recovery_codes=codes)


@router.post(
    "/mfa/challenge",
    response_model=TokenResponse,
    summary="Answer a login's MFA challenge with a TOTP code or a recovery code",
)
def mfa_challenge(body: ChallengeBody, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> TokenResponse:
    h = token_hash(body.mfa_token)
    now = time.time()
    with c.db.read() as conn:
        row = conn.execute(sa.select(db.mfa_challenges).where(db.mfa_challenges.c.token_hash == h)).first()
    # Counted per account, across its challenges (a new login must not bring a fresh budget), and per IP.
    mfa_limit(c, row.user_id if row is not None else h, who.ip)
    with c.db.write() as conn:
        if row is None or row.used_at is not None or row.expires_at < now:
            raise ApiError(401, "invalid_challenge", "unknown, used or expired MFA challenge; log in again")
        ok = second_factor_ok(c, conn, row.user_id, body.code, body.recovery_code)
        if not ok:
            audit(conn, who, row.user_id, "auth.mfa", "user", row.user_id, "failed")
    if not ok:
        raise ApiError(401, "invalid_code", "wrong or already used code")
    refuse_disabled(c, who, row.user_id, "auth.mfa")
    with c.db.write() as conn:
        conn.execute(db.mfa_challenges.update().where(db.mfa_challenges.c.token_hash == h).values(used_at=now))
        audit(conn, who, row.user_id, "auth.login", "user", row.user_id, "mfa_ok")
        return sign_in(c, conn, who, tasks, row.user_id, body)


@router.post("/mfa/disable", status_code=204, summary="Turn MFA off (password and a current code)")
def mfa_disable(body: DisableMfaBody, user: UserDep, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> Response:
    on = reauth.confirm(
        c, who, user.id, user.email, "mfa.disable", password=body.password, code=body.code,
        recovery_code=body.recovery_code,
    )
    if not on:
        raise ApiError(409, "mfa_disabled", "MFA is not on")
    with c.db.write() as conn:
        conn.execute(
            db.users.update().where(db.users.c.id == user.id).values(mfa_enabled=False, mfa_secret=None)
        )
        conn.execute(db.recovery_codes.delete().where(db.recovery_codes.c.user_id == user.id))
        devices.drop_trust(conn, user.id)
        audit(conn, who, user.id, "mfa.disable", "user", user.id)
        device = devices.of_session(conn, user.session_id, who)
    devices.notify(c, tasks, user.email, "Two-factor login (MFA) was turned off", device)
    return Response(status_code=204)


@router.post(
    "/password-reset/request",
    status_code=202,
    summary="Mail a single-use reset token; answers the same whether or not the account exists",
)
@router.post("/password-reset", status_code=202, summary="Ask for a reset token (the seed's path; as /request)")
def reset_request(body: ResetRequestBody, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> dict[str, str]:
    email = emails.normalize(body.email)
    limits = c.config.rate_limits
    try:
        c.limiter.hit("reset", (limits.reset, email), (limits.reset_ip, who.ip))
    except RateLimited as e:
        raise limited(e) from None
    if not c.mailer.configured:
        raise ApiError(503, "mail_unavailable", "this server has no mail server configured for password resets")
    token = opaque_token()
    with c.db.write() as conn:
        uid = conn.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).scalar()
        if uid is not None:
            conn.execute(
                db.reset_tokens.insert().values(
                    token_hash=token_hash(token), user_id=uid, expires_at=time.time() + c.config.reset_ttl
                )
            )
        audit(conn, who, uid, "auth.password_reset_request", "user", uid)
    # The mail goes after the answer, so the answer takes as long whether or not the account exists.
    tasks.add_task(_send_reset, c, email if uid is not None else None, token)
    return {"status": "accepted"}


def _send_reset(c: Context, email: str | None, token: str) -> None:
    if email is None:
        return
    minutes = c.config.reset_ttl // 60
    body_text = (
        "Someone asked to reset the password of your livedata account.\n\n"
        f"Your reset token, valid {minutes} minutes and usable once:\n\n{token}\n\n"
        f"Server: {c.config.public_url}\n\n"
        "If it was not you, ignore this message.\n"
    )
    try:
        c.mailer.send(email, "livedata password reset", body_text)
    except Exception as e:  # nobody waits for this answer; the log says it
        log.warning("mail delivery failed: %s", type(e).__name__)


@router.post("/password-reset/confirm", status_code=204, summary="Set a new password with a reset token")
def reset_confirm(body: ResetConfirmBody, c: CtxDep, who: ClientDep, tasks: BackgroundTasks) -> Response:
    h = token_hash(body.token)
    limits = c.config.rate_limits
    try:
        c.limiter.hit("reset_confirm", (limits.reset_ip, who.ip))
    except RateLimited as e:
        raise limited(e) from None
    new_hash = c.passwords.hash(body.new_password)
    now = time.time()
    with c.db.write() as conn:
        row = conn.execute(sa.select(db.reset_tokens).where(db.reset_tokens.c.token_hash == h)).first()
        if row is None or row.used_at is not None or row.expires_at < now:
            raise ApiError(400, "invalid_token", "unknown, used or expired reset token")
        used = conn.execute(
            db.reset_tokens.update()
            .where(db.reset_tokens.c.token_hash == h, db.reset_tokens.c.used_at.is_(None))
            .values(used_at=now)
        )
        if used.rowcount != 1:
            raise ApiError(400, "invalid_token", "unknown, used or expired reset token")
        conn.execute(
            db.users.update().where(db.users.c.id == row.user_id).values(password_hash=new_hash, updated_at=now)
        )
        reauth.end_reset_tokens(conn, row.user_id, now)
        revoke_sessions(conn, row.user_id, "password_reset")
        audit(conn, who, row.user_id, "auth.password_reset", "user", row.user_id)
        email = conn.execute(sa.select(db.users.c.email).where(db.users.c.id == row.user_id)).scalar_one()
    devices.notify(c, tasks, email, "The password was reset", devices.device_of(who, None))
    return Response(status_code=204)

