"""The local conversion queue: jobs that outlive the command that queued them.

A SQLite file of its own in the home (``convert-queue.sqlite``, mode 0600),
not a table of the index: the index is a cache that ``sync --rebuild`` may
empty and that a user may delete, while queued jobs exist nowhere else; and
a long-running worker's writes never queue behind an upload's.

One worker owns a job at a time: claiming is one ``BEGIN IMMEDIATE``
transaction that takes the oldest job that is queued, or running with an
expired lease, and stamps it with the worker's id and a new lease.  A
running worker renews its lease (with its progress) every third of the lease;
a worker killed mid-job stops renewing, so after the lease another worker
takes the job again.  A job taken ``MAX_ATTEMPTS`` times without finishing
fails with that reason; failed jobs keep theirs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livedata_cli import settings
from livedata_cli.errors import NotFound

QUEUE_FILE = "convert-queue.sqlite"
DEFAULT_LEASE = 60.0
MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    target TEXT NOT NULL,
    to_format TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    progress REAL,
    started REAL,
    finished REAL,
    result_id TEXT,
    engine TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
"""


@dataclass(frozen=True)
class Job:
    id: str
    created: float
    source: str
    source_id: str
    target: str
    to_format: str
    options: dict[str, Any]
    status: str  # queued, running, done, failed
    attempts: int
    worker: str | None
    lease_until: float | None
    progress: float | None
    started: float | None
    finished: float | None
    result_id: str | None
    engine: str | None
    error: str | None

    @property
    def stalled(self) -> bool:
        """Running, but its worker stopped renewing the lease: another worker will retry it."""
        return self.status == "running" and (self.lease_until or 0) < time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "source": self.source,
            "source_id": self.source_id,
            "path": self.target,
            "to": self.to_format,
            "engine": self.engine or self.options.get("engine"),
            "progress": None if self.progress is None else round(self.progress, 3),
            "attempts": self.attempts,
            "worker": self.worker,
            "stalled": self.stalled,
            "result_id": self.result_id,
            "output": self.options.get("output"),
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], created=row["created"], source=row["source"], source_id=row["source_id"],
        target=row["target"], to_format=row["to_format"], options=json.loads(row["options"] or "{}"),
        status=row["status"], attempts=row["attempts"], worker=row["worker"], lease_until=row["lease_until"],
        progress=row["progress"], started=row["started"], finished=row["finished"],
        result_id=row["result_id"], engine=row["engine"], error=row["error"],
    )


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Queue:
    """The queue of this home."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or settings.ensure_home() / QUEUE_FILE
        if not path.exists():  # vault paths are in the clear here: this user only
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self._lock = threading.Lock()  # a worker's heartbeat thread shares the connection
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self._write() as db:
            for statement in _SCHEMA.split(";"):  # executescript would commit on its own
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- producers -------------------------------------------------------------
    def add(self, *, source: str, source_id: str, target: str, to_format: str, options: dict[str, Any]) -> Job:
        job_id = secrets.token_hex(6)
        with self._write() as db:
            db.execute(
                "INSERT INTO jobs (id, created, source, source_id, target, to_format, options) VALUES (?,?,?,?,?,?,?)",
                (job_id, time.time(), source, source_id, target, to_format, json.dumps(options)),
            )
        return self.get(job_id)

    # -- readers ----------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        rows = self.db.execute("SELECT * FROM jobs WHERE id LIKE ? || '%'", (job_id.lower(),)).fetchall()
        if len(rows) != 1 or not job_id:
            raise NotFound(f"no conversion job {job_id!r}" + (" (ambiguous: give more of the id)" if rows else ""))
        return _job(rows[0])

    def list(self, limit: int = 50) -> list[Job]:
        rows = self.db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    # -- workers -----------------------------------------------------------------
    def claim(self, worker: str, lease: float) -> Job | None:
        """Take the oldest job that is queued or whose worker's lease ran out."""
        now = time.time()
        with self._write() as db:
            while True:
                row = db.execute(
                    "SELECT * FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_until < ?) "
                    "ORDER BY created LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                if row["attempts"] >= MAX_ATTEMPTS:
                    db.execute(
                        "UPDATE jobs SET status = 'failed', finished = ?, worker = NULL, lease_until = NULL, "
                        "error = ? WHERE id = ?",
                        (now, f"its worker stopped {row['attempts']} times before it finished", row["id"]),
                    )
                    continue
                db.execute(
                    "UPDATE jobs SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1, "
                    "started = ?, progress = 0, error = NULL WHERE id = ?",
                    (worker, now + lease, now, row["id"]),
                )
                return _job(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def renew(self, job_id: str, worker: str, lease: float, progress: float | None = None) -> bool:
        """Extend this worker's lease (and note progress); False when the job is no longer its own."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET lease_until = ?, progress = COALESCE(?, progress) "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time() + lease, progress, job_id, worker),
            )
            return cur.rowcount == 1

    def done(self, job_id: str, worker: str, *, result_id: str | None, engine: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = 'done', finished = ?, progress = 1, lease_until = NULL, "
                "result_id = ?, engine = ?, error = NULL WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time(), result_id, engine, job_id, worker),
            )

    def fail(self, job_id: str, worker: str, reason: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', finished = ?, lease_until = NULL, error = ? "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time(), reason, job_id, worker),
            )

    def release(self, job_id: str, worker: str) -> None:
        """Give a job back (the worker was stopped): queued again, this attempt not counted."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL, progress = NULL, "
                "attempts = MAX(0, attempts - 1) WHERE id = ? AND worker = ? AND status = 'running'",
                (job_id, worker),
            )
