"""How long the server keeps IP addresses: ``ip_retention_days`` (default 30), then they are erased.

An IP address is personal data and is useful only while an incident is
fresh, so audit records and sessions keep theirs for the retention period
and then hold NULL; the rest of the record (what, when, which account) stays.
The purge runs when the database is migrated (``livedata server migrate``
and every server start) and then every few minutes from the janitor; the
``ix_audit_logs_created`` index keeps it cheap.  Sessions gain their IP
columns in migration 006; the purge erases those only where they exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from livedata_cli.server import clock, db

DAY = 24 * 3600


@dataclass(frozen=True)
class Purged:
    audit: int
    sessions: int


def purge_ips(database: db.Database, days: int, now: float | None = None) -> Purged:
    """Erase the IP addresses recorded more than ``days`` days ago."""
    cutoff = (clock.now() if now is None else now) - days * DAY
    a = db.audit_logs.c
    with database.write() as conn:
        audit = conn.execute(
            db.audit_logs.update().where(a.created_at < cutoff, a.ip.is_not(None)).values(ip=None)
        ).rowcount
        have = {col["name"] for col in sa.inspect(conn).get_columns("sessions")}
        s = sa.table("sessions", *(sa.column(n) for n in have))
        sessions = 0
        if "ip" in have:
            sessions += conn.execute(
                s.update().where(s.c.created_at < cutoff, s.c.ip.is_not(None)).values(ip=None)
            ).rowcount
        if "last_ip" in have:
            seen = (
                sa.func.coalesce(s.c.last_seen_at, s.c.created_at)
                if "last_seen_at" in have
                else s.c.created_at
            )
            sessions += conn.execute(
                s.update().where(seen < cutoff, s.c.last_ip.is_not(None)).values(last_ip=None)
            ).rowcount
    return Purged(audit=audit, sessions=sessions)
