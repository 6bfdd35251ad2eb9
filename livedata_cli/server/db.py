"""Schema, named migrations and transactions, on SQLite or PostgreSQL (SQLAlchemy Core).

Migrations are a named, ordered list applied once each and recorded in
``schema_migrations`` (the same habit as the client index): append new ones
at the END with a new name, never edit an existing one.  ``migrate`` is
idempotent and safe when several processes start at once: PostgreSQL takes
an advisory lock, SQLite a ``BEGIN IMMEDIATE`` write lock.

SQLite runs in WAL mode with a busy timeout, and every write transaction
starts with ``BEGIN IMMEDIATE`` so that two writers queue instead of failing
with "database is locked" halfway through.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

# A row of any query: what the routers read and pass around.
AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("last_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("quota_bytes", sa.BigInteger, nullable=False),
    sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("mfa_secret", sa.LargeBinary, nullable=True),
    sa.Column("mfa_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("mfa_last_step", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("disabled_at", sa.Float, nullable=True),  # added by 007_account_security
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revoked_reason", sa.String(64), nullable=True),
    # Added by 006_devices: a session is a signed-in device.
    sa.Column("device_name", sa.String(200), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("last_seen_at", sa.Float, nullable=True),
    sa.Column("last_ip", sa.String(64), nullable=True),
    sa.Column("trusted_until", sa.Float, nullable=True),
    sa.Column("trust_hash", sa.String(64), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Index("ix_refresh_tokens_session", "session_id"),
)

mfa_challenges = sa.Table(
    "mfa_challenges",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
)

recovery_codes = sa.Table(
    "recovery_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
    sa.Index("ix_recovery_codes_user", "user_id"),
)

reset_tokens = sa.Table(
    "reset_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float, nullable=True),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("meta", sa.Text, nullable=False, server_default="{}"),
    sa.Column("blob_key", sa.String(128), nullable=False),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=True),
    sa.Index("ix_files_owner_created", "owner_id", "created_at"),
    sa.Index("ix_files_key_version", "key_version"),
)

file_tags = sa.Table(
    "file_tags",
    metadata,
    sa.Column("file_id", sa.String(32), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True),
    sa.Index("ix_file_tags_tag", "tag"),
)

shares = sa.Table(
    "shares",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("file_id", sa.String(32), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("manifest", sa.Text, nullable=False, server_default=""),
    sa.Column("password_verifier_hash", sa.String(255), nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("max_downloads", sa.Integer, nullable=True),
    sa.Column("downloads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_shares_owner", "owner_id"),
)

conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("file_id", sa.String(32), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    sa.Column("target_format", sa.String(32), nullable=False),
    sa.Column("options", sa.Text, nullable=False, server_default="{}"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("result_file_id", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_conversions_owner_status", "owner_id", "status"),
)

audit_logs = sa.Table(
    "audit_logs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(32), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=True),
    sa.Column("object_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(512), nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_audit_logs_user", "user_id", "id"),
)

# Tables added by later migrations.  Each group has its own MetaData, created
# by the migration named beside it, so that 001 keeps creating only the
# tables above.

# File passwords' server half (``server/filelocks.py``).  Created by 003_file_locks.
file_locks_metadata = sa.MetaData()

file_locks = sa.Table(
    "file_locks",
    file_locks_metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), nullable=False, index=True),
    sa.Column("verifier_hash", sa.String(64), nullable=False),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
)

file_lock_accounts = sa.Table(
    "file_lock_accounts",
    file_locks_metadata,
    sa.Column("owner_id", sa.String(32), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.Float, nullable=False, server_default="0"),
)

# Each account's X25519 public key (``livedata share --to``) and the Ed25519
# key its shares are signed with; the private keys never reach the server.
# Created by the 004_public_keys migration; ``signing_key`` added by 008.
keys_metadata = sa.MetaData()

public_keys = sa.Table(
    "public_keys",
    keys_metadata,
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("signing_key", sa.String(64), nullable=True),
)

# A share addressed to one account (``livedata share --to``): its manifest is
# sealed to her public key, only she lists and fetches it (``/shares/incoming``)
# and the public link endpoints answer 404 for it.  Created by 004_public_keys.
recipients_metadata = sa.MetaData()

share_recipients = sa.Table(
    "share_recipients",
    recipients_metadata,
    sa.Column("share_id", sa.String(32), primary_key=True),
    sa.Column("recipient_id", sa.String(32), nullable=False, index=True),
)

# Resumable uploads while they are unfinished (``server/uploads.py``, ``server/spools.py``
# tells what the columns after ``created_at`` are for).  Created by 005_resumable_uploads
# with every column of today's definition; 009_upload_spools adds the later ones (and
# ``upload_parts``) to a database made before them.
uploads_metadata = sa.MetaData()

uploads = sa.Table(
    "uploads",
    uploads_metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.String(32), sa.ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("file_name", sa.String(1024), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", sa.Text, nullable=False, server_default=""),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("replace", sa.Boolean, nullable=False),
    sa.Column("create_only", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # Added by 009_upload_spools.
    sa.Column("last_active", sa.Float, nullable=True),
    sa.Column("held", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("claim", sa.String(32), nullable=True),
    sa.Column("claim_until", sa.Float, nullable=True),
    sa.Column("mp_id", sa.String(1024), nullable=True),
    sa.Column("pending", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("assembled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_uploads_owner", "owner_id"),
    sa.Index("ix_uploads_created", "created_at"),
)

upload_parts = sa.Table(
    "upload_parts",
    uploads_metadata,
    sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("etag", sa.String(200), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

migrations_table = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _m001_initial(conn: Connection) -> None:
    metadata.create_all(conn)


def _m002_files_by_name(conn: Connection) -> None:
    """Lookups and listings by file name (a vault's store keys), in byte order on PostgreSQL too."""
    collate = ' COLLATE "C"' if conn.dialect.name == "postgresql" else ""
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_files_owner_name ON files (owner_id, file_name{collate})")


def _m003_file_locks(conn: Connection) -> None:
    """File passwords' server half: verifier locks and their failure counts."""
    file_locks_metadata.create_all(conn)


def _m004_public_keys(conn: Connection) -> None:
    """Accounts' X25519 public keys and shares addressed to one account (``share --to``)."""
    keys_metadata.create_all(conn)
    recipients_metadata.create_all(conn)


def _m005_resumable_uploads(conn: Connection) -> None:
    """Uploads sent in parts (``/files/uploads``) while they are unfinished (with every column of today's ``uploads``)."""
    uploads_metadata.create_all(conn)


def _m006_devices(conn: Connection) -> None:
    """Sessions as devices: name, user agent, sign-in and last-seen IP and time, device trust.

    The columns are part of ``sessions`` above, so a database created after
    this migration has them from 001; only the ones missing are added.
    """
    have = {col["name"] for col in sa.inspect(conn).get_columns("sessions")}
    for col in sessions.columns:
        if col.name not in have:
            kind = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE sessions ADD COLUMN {col.name} {kind}")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_sessions_trust_hash ON sessions (trust_hash)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_sessions_user ON sessions (user_id)")


def _m007_account_security(conn: Connection) -> None:
    """Accounts an administrator disabled, and the index the IP purge walks (``server/retention.py``).

    ``disabled_at`` is part of ``users`` above, so a database created after
    this migration has it from 001; it is added only when missing.
    """
    have = {col["name"] for col in sa.inspect(conn).get_columns("users")}
    if "disabled_at" not in have:
        kind = users.c.disabled_at.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE users ADD COLUMN disabled_at {kind}")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_audit_logs_created ON audit_logs (created_at)")


def _m008_signing_keys(conn: Connection) -> None:
    """Accounts' Ed25519 signing keys, published beside the X25519 key (signed ``share --to``).

    Absent on a database made before this migration; added only when missing.
    """
    have = {col["name"] for col in sa.inspect(conn).get_columns("public_keys")}
    if "signing_key" not in have:
        kind = public_keys.c.signing_key.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE public_keys ADD COLUMN signing_key {kind}")


# The columns 009 adds to ``uploads`` on a database made before them.
_UPLOAD_SPOOL_COLUMNS = {
    "last_active": "FLOAT",
    "held": "BIGINT NOT NULL DEFAULT 0",
    "claim": "VARCHAR(32)",
    "claim_until": "FLOAT",
    "mp_id": "VARCHAR(1024)",
    "pending": "BIGINT NOT NULL DEFAULT 0",
    "assembled": "BOOLEAN NOT NULL DEFAULT FALSE",
}


def _m009_upload_spools(conn: Connection) -> None:
    """Resumable uploads: held bytes against the quota, claims, idle time, S3 multipart part lists."""
    have = {col["name"] for col in sa.inspect(conn).get_columns("uploads")}
    for name, kind in _UPLOAD_SPOOL_COLUMNS.items():
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE uploads ADD COLUMN {name} {kind}")
    upload_parts.create(conn, checkfirst=True)


# (name, function): applied in order, once each.  Append only.
MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_files_by_name", _m002_files_by_name),
    ("003_file_locks", _m003_file_locks),
    ("004_public_keys", _m004_public_keys),
    ("005_resumable_uploads", _m005_resumable_uploads),
    ("006_devices", _m006_devices),
    ("007_account_security", _m007_account_security),
    ("008_signing_keys", _m008_signing_keys),
    ("009_upload_spools", _m009_upload_spools),
]


class Database:
    """An engine plus the two kinds of transaction the server uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        self.engine = _engine(url)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(livedata_write=True)
            with conn.begin():
                yield conn

    def migrate(self) -> list[str]:
        """Apply the migrations this database lacks; return their names."""
        applied: list[str] = []
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7340711)")
            migrations_table.create(conn, checkfirst=True)
            done = set(conn.scalars(sa.select(migrations_table.c.name)))
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                fn(conn)
                conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
                applied.append(name)
        return applied

    def pending(self) -> list[str]:
        """Names of migrations not yet applied (``/readyz`` wants none)."""
        with self.read() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                return [n for n, _ in MIGRATIONS]
            done = set(conn.scalars(sa.select(migrations_table.c.name)))
        return [n for n, _ in MIGRATIONS if n not in done]

    def scrub(self) -> None:
        """SQLite: write the WAL into the database and empty it, so that deleted rows (zeroed by
        ``secure_delete``) leave no copy behind in the -wal file.  PostgreSQL: nothing here."""
        if self.dialect != "sqlite":
            return
        for attempt in range(20):  # readers in the middle of a transaction hold the WAL: wait for them
            raw = self.engine.raw_connection()
            try:
                busy = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                raw.close()
            if not busy:
                return
            time.sleep(0.05 * (attempt + 1))
        import logging

        logging.getLogger("livedata.server").warning(
            "checkpoint", extra={"fields": {"event": "wal_checkpoint_busy"}}
        )

    def dispose(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = sa.create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=20, max_overflow=20
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("livedata_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
