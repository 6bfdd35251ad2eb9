"""Multipart uploads in progress (S3), so a killed upload resumes: their tables and SQL.

The data key is wrapped by the vault key, never stored in the clear; each
part's plaintext is kept as a keyed hash, so a resume reuses the data key and
salt only when the parts already sent hold the same plaintext
(livedata_cli/vault/resume.py).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

# Multipart uploads in progress (S3), so a killed upload resumes: the
# data key is wrapped by the vault key, never stored in the clear.
UPLOADS = """
        CREATE TABLE pending_uploads (
            object TEXT PRIMARY KEY,
            upload_id TEXT NOT NULL,
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            wrapped_key BLOB NOT NULL,
            salt BLOB NOT NULL,
            part_size INTEGER NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX pending_uploads_source ON pending_uploads(source, path)
        """

# A keyed hash of each part's plaintext of a pending multipart upload: a
# resume reuses the data key and salt only when the parts already sent
# hold the same plaintext (livedata_cli/vault/resume.py).
PART_MACS = """
        CREATE TABLE pending_parts (
            object TEXT NOT NULL,
            part INTEGER NOT NULL,
            mac TEXT NOT NULL,
            PRIMARY KEY (object, part)
        )
        """


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload this machine started and has not finished."""

    object: str
    upload_id: str
    source: str
    path: str
    size: int
    mtime: float
    wrapped_key: bytes
    salt: bytes
    part_size: int
    created: float


class PendingUploads:
    """The ``pending_uploads`` table, on a connection of its own: upload workers
    use it from their threads while the main thread writes journals."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def find(self, source: str, path: str) -> PendingUpload | None:
        with self._lock:
            row = self.db.execute(
                "SELECT * FROM pending_uploads WHERE source = ? AND path = ? ORDER BY created DESC LIMIT 1",
                (source, path),
            ).fetchone()
        if row is None:
            return None
        return PendingUpload(**{k: row[k] for k in row.keys()})  # noqa: SIM118

    def save(self, up: PendingUpload) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(
                    "INSERT OR REPLACE INTO pending_uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        up.object, up.upload_id, up.source, up.path, up.size, up.mtime,
                        up.wrapped_key, up.salt, up.part_size, up.created,
                    ),
                )
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def drop(self, obj: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM pending_uploads WHERE object = ?", (obj,))
            self.db.execute("DELETE FROM pending_parts WHERE object = ?", (obj,))

    def save_part(self, obj: str, part: int, mac: str) -> None:
        """The keyed hash of one part's plaintext, kept before the part can be resumed."""
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO pending_parts VALUES (?, ?, ?)", (obj, part, mac))

    def part_macs(self, obj: str) -> dict[int, str]:
        with self._lock:
            return {int(r[0]): str(r[1]) for r in self.db.execute(
                "SELECT part, mac FROM pending_parts WHERE object = ?", (obj,)
            )}

    def upload_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT upload_id FROM pending_uploads")}
