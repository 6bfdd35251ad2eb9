"""Operator commands: what ``livedata server migrate | rotate-key | retire-key | create-admin | users ...`` do.

They run on the database and keys directly, from the operator's shell, not
over HTTP; the administrators' HTTP API is ``server/admin_api.py``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import sqlalchemy as sa

from livedata_cli.errors import Refused, StoreUnreachable, UsageError
from livedata_cli.server import db
from livedata_cli.server.config import ServerConfig
from livedata_cli.server.emails import normalize, printable, refusal
from livedata_cli.server.keys import ServerKeys
from livedata_cli.server.security import Passwords


def open_database(config: ServerConfig) -> db.Database:
    try:
        return db.Database(config.db_url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        raise UsageError("--db must be a sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB URL") from None


def unreachable(e: sa.exc.DBAPIError | sa.exc.OperationalError) -> StoreUnreachable:
    # The driver's own first line: it names host and port, never the password.
    first = str(getattr(e, "orig", e)).strip().splitlines()[0] if str(getattr(e, "orig", e)).strip() else ""
    return StoreUnreachable(f"the database is unreachable: {first or type(e).__name__}")


def migrate(config: ServerConfig) -> list[str]:
    """Apply pending migrations, then erase IPs older than the retention; returns the migrations' names."""
    from livedata_cli.server.retention import purge_ips

    database = open_database(config)
    try:
        applied = database.migrate()
        purge_ips(database, config.ip_retention_days)
        if os.path.exists(config.keys_path) and (
            ServerKeys(config.keys_path).separate(lambda keys: _reseal(database, keys)) is not None
        ):
            applied.append("keys: sealing secret")
        return applied
    except sa.exc.OperationalError as e:
        raise unreachable(e) from None
    finally:
        database.dispose()


def _reseal(database: db.Database, keys: ServerKeys) -> int:
    """Re-seal every value the token secret sealed (TOTP secrets) under the sealing secret."""
    done = 0
    with database.write() as conn:
        rows = conn.execute(sa.select(db.users.c.id, db.users.c.mfa_secret).where(db.users.c.mfa_secret.is_not(None)))
        for row in rows.all():
            secret = keys.open("totp", row.mfa_secret)
            conn.execute(db.users.update().where(db.users.c.id == row.id).values(mfa_secret=keys.seal("totp", secret)))
            done += 1
    return done


def retire_key(config: ServerConfig, version: int) -> int:
    """Remove a key version no blob uses any more; returns how many versions remain."""
    migrate(config)
    keys = ServerKeys(config.keys_path)
    database = open_database(config)
    try:
        with database.read() as conn:
            using = conn.execute(
                sa.select(sa.func.count()).select_from(db.files).where(db.files.c.key_version == version)
            ).scalar_one()
    except sa.exc.OperationalError as e:
        raise unreachable(e) from None
    finally:
        database.dispose()
    if using:
        raise Refused(
            f"{using} blob data keys still use key version {version}: "
            "re-wrap them first ('livedata server rotate-key' re-wraps every one under a new version)"
        )
    keys.retire(version)
    return len(keys.versions)


@dataclass(frozen=True)
class Rotation:
    version: int
    rewrapped: int


def rewrap(config: ServerConfig, keys: ServerKeys, batch: int = 500) -> int:
    """Re-wrap every blob data key under the current key version; rows only, never blob data."""
    database = open_database(config)
    current = keys.current_version
    done = 0
    t = db.files.c
    try:
        while True:
            with database.read() as conn:
                rows = conn.execute(
                    sa.select(t.id, t.blob_key, t.key_version, t.wrapped_key)
                    .where(t.key_version != current)
                    .limit(batch)
                ).all()
            if not rows:
                return done
            with database.write() as conn:
                for row in rows:
                    blob_id = row.blob_key.removeprefix("data/")
                    data_key = keys.unwrap(blob_id, row.key_version, row.wrapped_key)
                    version, wrapped = keys.wrap(blob_id, data_key, current)
                    done += conn.execute(
                        db.files.update()
                        .where(t.id == row.id, t.key_version == row.key_version)
                        .values(key_version=version, wrapped_key=wrapped)
                    ).rowcount
    except sa.exc.OperationalError as e:
        raise unreachable(e) from None
    finally:
        database.dispose()


def rotate_key(config: ServerConfig) -> Rotation:
    """Add a key version (running servers pick it up for new blobs), then re-wrap old data keys."""
    migrate(config)
    keys = ServerKeys(config.keys_path)
    version = keys.rotate()
    return Rotation(version=version, rewrapped=rewrap(config, keys))


def create_admin(config: ServerConfig, email: str, password: str, first_name: str = "", last_name: str = "") -> str:
    """Create an administrator account, or make an existing account one; returns its id."""
    import re

    from livedata_cli.server.app import build_context
    from livedata_cli.server.auth import EMAIL_PATTERN, create_user
    from livedata_cli.server.deps import ApiError

    email = normalize(email)
    if not re.match(EMAIL_PATTERN, email) or refusal(email):
        raise UsageError(f"not an email address: {printable(email)!r}")
    if len(password) < 8:
        raise UsageError("the password needs at least 8 characters")
    migrate(config)
    c = build_context(config)
    try:
        password_hash = Passwords(1, weaken=config.weaken_kdf).hash(password)
        with c.db.write() as conn:
            existing = conn.execute(sa.select(db.users.c.id).where(db.users.c.email == email)).scalar()
            if existing is not None:
                conn.execute(db.users.update().where(db.users.c.id == existing).values(is_admin=True))
                return str(existing)
            try:
                return create_user(c, conn, email, password_hash, first_name, last_name, admin=True)
            except ApiError as e:
                raise UsageError(e.message) from None
    finally:
        c.db.dispose()


def list_users(config: ServerConfig) -> list[dict[str, object]]:
    """Every account, by email, as the admin API lists them (``livedata server users list``)."""
    from livedata_cli.server.admin_api import list_users as listing

    migrate(config)
    database = open_database(config)
    try:
        with database.read() as conn:
            return [u.model_dump() for u in listing(conn)]
    finally:
        database.dispose()


def set_user_disabled(config: ServerConfig, email: str, disabled: bool) -> dict[str, object]:
    """Disable an account (its sessions end at once) or enable it again, by email."""
    from livedata_cli.errors import NotFound
    from livedata_cli.server.admin_api import find_user, set_disabled
    from livedata_cli.server.deps import Client, audit

    migrate(config)
    database = open_database(config)
    try:
        with database.write() as conn:
            found = find_user(conn, email=email)
            if found is None:
                raise NotFound(f"no account with the email {normalize(email)!r}")
            set_disabled(conn, found.id, disabled)
            operator = Client(ip="", user_agent="livedata server users", request_id="")
            audit(conn, operator, None, "admin.user_disable" if disabled else "admin.user_enable", "user", found.id)
            changed = find_user(conn, user_id=found.id)
        assert changed is not None
        return changed.model_dump()
    finally:
        database.dispose()


def reset_mfa(config: ServerConfig, email: str) -> dict[str, object]:
    """Turn an account's MFA off for its owner (``livedata server users reset-mfa``).

    For an owner locked out by a lost authenticator, or by someone who turned
    MFA on with a stolen token: the TOTP secret and recovery codes go, every
    session ends and every device's trust is dropped, so whoever held a token
    holds nothing; the owner logs in with the password and sets MFA up again.
    """
    from livedata_cli.errors import NotFound
    from livedata_cli.server.admin_api import find_user
    from livedata_cli.server.auth import revoke_sessions
    from livedata_cli.server.deps import Client, audit

    migrate(config)
    database = open_database(config)
    try:
        with database.write() as conn:
            found = find_user(conn, email=email)
            if found is None:
                raise NotFound(f"no account with the email {normalize(email)!r}")
            was_on = bool(
                conn.execute(sa.select(db.users.c.mfa_enabled).where(db.users.c.id == found.id)).scalar_one()
            )
            conn.execute(
                db.users.update()
                .where(db.users.c.id == found.id)
                .values(mfa_enabled=False, mfa_secret=None, mfa_last_step=0, updated_at=time.time())
            )
            conn.execute(db.recovery_codes.delete().where(db.recovery_codes.c.user_id == found.id))
            conn.execute(db.mfa_challenges.delete().where(db.mfa_challenges.c.user_id == found.id))
            revoke_sessions(conn, found.id, "mfa_reset")
            operator = Client(ip="", user_agent="livedata server users", request_id="")
            audit(conn, operator, None, "admin.mfa_reset", "user", found.id)
        return {"email": found.email, "id": found.id, "mfa_was_enabled": was_on, "mfa_enabled": False}
    finally:
        database.dispose()
