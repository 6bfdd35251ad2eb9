"""What a person proves who she is with, and the limits on trying.

Password and code attempts are counted per account and per address (HTTP
429 past the limits); a TOTP code is accepted once (its step becomes the
last accepted one); a recovery code is used up.  The login routes
(``server/auth.py``) and the checks before a change that takes over an
account (``server/reauth.py``) build on these.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.deps import ApiError, Context
from livedata_cli.server.ratelimit import RateLimited
from livedata_cli.server.security import normalize_recovery, token_hash, totp_match


def limited(e: RateLimited) -> ApiError:
    return ApiError(
        429, "rate_limited", f"too many attempts; retry in {e.retry_after}s", {"Retry-After": str(e.retry_after)}
    )


def check_totp(c: Context, conn: Connection, user_id: str, code: str) -> bool:
    """Accept a code once: the step it belongs to becomes the last accepted one."""
    row = conn.execute(
        sa.select(db.users.c.mfa_secret, db.users.c.mfa_last_step).where(db.users.c.id == user_id)
    ).one()
    if row.mfa_secret is None:
        return False
    secret = c.keys.open("totp", row.mfa_secret).decode()
    step = totp_match(secret, code, int(row.mfa_last_step))
    if step is None:
        return False
    took = conn.execute(
        db.users.update()
        .where(db.users.c.id == user_id, db.users.c.mfa_last_step < step)
        .values(mfa_last_step=step)
    )
    return took.rowcount == 1


def second_factor_ok(
    c: Context, conn: Connection, user_id: str, code: str | None, recovery_code: str | None
) -> bool:
    """A current TOTP code (accepted once), or an unused recovery code (used up here)."""
    if code:
        return check_totp(c, conn, user_id, code)
    if not recovery_code:
        return False
    r = db.recovery_codes.c
    used = conn.execute(
        db.recovery_codes.update()
        .where(
            r.user_id == user_id,
            r.code_hash == token_hash(normalize_recovery(recovery_code)),
            r.used_at.is_(None),
        )
        .values(used_at=time.time())
    )
    return used.rowcount == 1


def login_limit(c: Context, email: str, ip: str) -> None:
    """Password attempts, per account and per address."""
    limits = c.config.rate_limits
    try:
        c.limiter.hit("login", (limits.login, email), (limits.login_ip, ip))
    except RateLimited as e:
        raise limited(e) from None


def mfa_limit(c: Context, key: str, ip: str) -> None:
    limits = c.config.rate_limits
    try:
        c.limiter.hit("mfa", (limits.mfa, key), (limits.mfa_ip, ip))
    except RateLimited as e:
        raise limited(e) from None
