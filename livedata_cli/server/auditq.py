"""Audit records of reads, written in batches (``--audit-batch-ms``).

A metadata read is otherwise a write transaction of its own, only for its
audit record.  With a batch interval, such records wait in the process and
go in one multi-row INSERT every interval (and at shutdown), so reads need
only a read transaction.  The price: a server killed with ``kill -9`` loses
the read records of its last interval.  Changes (uploads, deletions, shares,
logins) are always recorded in their own transaction, never batched.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from anyio import to_thread

from livedata_cli.server import db
from livedata_cli.server.deps import Client

log = logging.getLogger("livedata.server")
MAX_ROWS = 5000  # a flush is due at once past this many waiting records


class AuditQueue:
    """Records waiting for the next flush; safe from any thread."""

    def __init__(self, database: db.Database, interval: float) -> None:
        self.database = database
        self.interval = interval
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, who: Client, user_id: str | None, action: str, object_type: str | None, object_id: str | None) -> None:
        row = {
            "user_id": user_id, "action": action, "object_type": object_type, "object_id": object_id,
            "ip": who.ip[:64], "user_agent": who.user_agent, "request_id": who.request_id[:64], "status": "ok",
            "created_at": time.time(),
        }
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= MAX_ROWS
        if full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                with self.database.write() as conn:
                    conn.execute(db.audit_logs.insert(), rows)
            except BaseException:
                with self._lock:  # kept for the next try
                    self._rows[:0] = rows
                raise
        return len(rows)

    async def run(self) -> None:
        """Flush every interval until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await to_thread.run_sync(self.flush)
                except Exception:
                    log.exception("writing batched audit records failed")
        finally:
            await to_thread.run_sync(self.flush)
