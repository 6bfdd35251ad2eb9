"""The password again (and a second factor when MFA is on) before a change that takes over an account.

A stolen access token alone must not turn MFA on or off nor change the
password: each of those asks for the current password, and a TOTP or
recovery code when MFA is on, counted against the same per-account and
per-IP budget as a login.  A wrong answer is a 403, not a 401: the access
token is fine, and a client must not take the answer for an expired login
and refresh.
"""

from __future__ import annotations

import sqlalchemy as sa

from livedata_cli.server import db
from livedata_cli.server.deps import ApiError, Client, Context, audit
from livedata_cli.server.factors import login_limit, mfa_limit, second_factor_ok


def confirm(
    c: Context,
    who: Client,
    user_id: str,
    email: str,
    action: str,
    *,
    password: str,
    code: str | None = None,
    recovery_code: str | None = None,
    refused: str = "",
) -> bool:
    """Check the password (and the second factor when MFA is on); returns whether MFA is on.

    A wrong one is a 403, not a 401: the access token is fine, and a client
    must not take the answer for an expired login and refresh.  ``refused``
    says what did not happen (added to the message)."""
    tail = f"; {refused}" if refused else ""
    login_limit(c, email, who.ip)
    with c.db.read() as conn:
        row = conn.execute(
            sa.select(db.users.c.password_hash, db.users.c.mfa_enabled).where(db.users.c.id == user_id)
        ).one()
    if not c.passwords.verify(row.password_hash, password):
        with c.db.write() as conn:
            audit(conn, who, user_id, action, "user", user_id, "failed")
        raise ApiError(403, "invalid_credentials", f"wrong password{tail}")
    if not row.mfa_enabled:
        return False
    mfa_limit(c, user_id, who.ip)
    with c.db.write() as conn:
        ok = second_factor_ok(c, conn, user_id, code, recovery_code)
        if not ok:
            audit(conn, who, user_id, action, "user", user_id, "failed")
    if not ok:
        raise ApiError(403, "invalid_code", f"MFA is on: a current code or an unused recovery code is needed{tail}")
    return True


def end_reset_tokens(conn: sa.Connection, user_id: str, now: float) -> None:
    """Every outstanding password-reset token of the account stops working (after a reset or a change)."""
    conn.execute(
        db.reset_tokens.update()
        .where(db.reset_tokens.c.user_id == user_id, db.reset_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
