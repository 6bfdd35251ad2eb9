"""The local SQLite index: a cache of the journals held in the store.

Everything here can be rebuilt by ``livedata sync`` from the store and the
vault key, so losing it loses nothing.  Two processes may write at once (two
cron jobs): the database runs in WAL mode, waits up to 30 s for a lock, and
every write transaction starts with ``BEGIN IMMEDIATE`` so none is lost to
"database is locked".

The standard library's ``sqlite3`` is used directly: it is already loaded,
where a wrapper library would cost tens of milliseconds on every start-up.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livedata_cli.errors import LivedataError

# Named, ordered migrations, applied on open.  Never edit one that has shipped:
# add the next.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_versions",
        """
        CREATE TABLE versions (
            vid TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            object TEXT NOT NULL,
            "offset" INTEGER NOT NULL DEFAULT 0,
            length INTEGER NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL,
            mode INTEGER,
            mime TEXT,
            hash TEXT NOT NULL,
            header_hash TEXT NOT NULL,
            wrapped_key BLOB NOT NULL,
            key_id TEXT NOT NULL,
            created REAL NOT NULL,
            derived_from TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            notes TEXT NOT NULL DEFAULT '',
            deleted REAL,
            journal TEXT
        );
        CREATE INDEX versions_path ON versions(path, created);
        CREATE INDEX versions_hash ON versions(hash);
        CREATE INDEX versions_object ON versions(object);
        CREATE TABLE journals (name TEXT PRIMARY KEY);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
]


class IndexError_(LivedataError):
    """The local index cannot be used: run 'livedata sync --rebuild'."""


@dataclass(frozen=True)
class Version:
    """One stored version of one vault path, as the index knows it."""

    vid: str
    path: str
    object: str
    offset: int
    length: int
    size: int
    mtime: float | None
    mode: int | None
    mime: str | None
    hash: str
    header_hash: str
    wrapped_key: bytes
    key_id: str
    created: float
    derived_from: str | None
    tags: tuple[str, ...]
    notes: str
    deleted: float | None
    number: int = 0  # 1 for the oldest version of its path

    def to_json(self) -> dict[str, Any]:
        """The fields a user may see (no wrapped key)."""
        return {
            "id": self.vid,
            "path": self.path,
            "version": self.number,
            "object": self.object,
            "size": self.size,
            "mtime": self.mtime,
            "mode": self.mode,
            "mime": self.mime,
            "hash": self.hash,
            "header_hash": self.header_hash,
            "key_id": self.key_id,
            "created": self.created,
            "derived_from": self.derived_from,
            "tags": list(self.tags),
            "notes": self.notes,
            "deleted": self.deleted,
        }


_COLUMNS = (
    "vid, path, object, \"offset\", length, size, mtime, mode, mime, hash, header_hash, "
    "wrapped_key, key_id, created, derived_from, tags, notes, deleted"
)
_NUMBERED = (
    f"SELECT {_COLUMNS}, ROW_NUMBER() OVER (PARTITION BY path ORDER BY created, vid) AS number "
    "FROM versions"
)


def _version(row: sqlite3.Row) -> Version:
    return Version(
        vid=row["vid"],
        path=row["path"],
        object=row["object"],
        offset=row["offset"],
        length=row["length"],
        size=row["size"],
        mtime=row["mtime"],
        mode=row["mode"],
        mime=row["mime"],
        hash=row["hash"],
        header_hash=row["header_hash"],
        wrapped_key=bytes(row["wrapped_key"]),
        key_id=row["key_id"],
        created=row["created"],
        derived_from=row["derived_from"],
        tags=tuple(json.loads(row["tags"])),
        notes=row["notes"],
        deleted=row["deleted"],
        number=row["number"] if "number" in row.keys() else 0,  # noqa: SIM118 (Row "in" tests values)
    )


class Index:
    """Queries and journal replay over the local SQLite cache."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Names and tags are plaintext here: the file is for this user only.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise IndexError_(f"the index {path} is unusable ({e}): delete it and run 'livedata sync'") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so concurrent writers queue."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
            done = {r[0] for r in db.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("INSERT INTO migrations (name) VALUES (?)", (name,))

    # -- meta ------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- journal replay ----------------------------------------------------
    def applied_journals(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM journals")}

    def apply(self, journal: str, records: Iterable[dict[str, Any]]) -> bool:
        """Apply one journal's records atomically; False if it was applied already."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM journals WHERE name = ?", (journal,)).fetchone():
                return False
            for rec in records:
                _apply_record(db, journal, rec)
            db.execute("INSERT INTO journals (name) VALUES (?)", (journal,))
        return True

    def clear(self) -> None:
        with self.write() as db:
            db.execute("DELETE FROM versions")
            db.execute("DELETE FROM journals")

    # -- queries ---------------------------------------------------------
    def versions_of(self, path: str, *, trash: bool = False) -> list[Version]:
        """All versions of one path, oldest first (numbered from 1)."""
        rows = self.db.execute(
            f"SELECT * FROM ({_NUMBERED} WHERE path = ?) "
            f"WHERE (deleted IS NOT NULL) = ? ORDER BY number",
            (path, trash),
        ).fetchall()
        return [_version(r) for r in rows]

    def version_by_id(self, vid: str) -> Version | None:
        row = self.db.execute(f"SELECT * FROM ({_NUMBERED}) WHERE vid = ?", (vid,)).fetchone()
        return None if row is None else _version(row)

    def latest(self, prefix: str = "", *, trash: bool = False) -> list[tuple[Version, int]]:
        """The newest version of every path under a prefix, with its count of versions."""
        rows = self.db.execute(
            f"""
            SELECT * FROM (
                SELECT *, COUNT(*) OVER (PARTITION BY path) AS n_versions,
                       ROW_NUMBER() OVER (PARTITION BY path ORDER BY created DESC, vid DESC) AS rn
                FROM ({_NUMBERED} WHERE path LIKE ? ESCAPE '\\')
                WHERE (deleted IS NOT NULL) = ?
            ) WHERE rn = 1 ORDER BY path
            """,
            (_like_prefix(prefix), trash),
        ).fetchall()
        return [(_version(r), int(r["n_versions"])) for r in rows]

    def find_by_hash(self, hash_: str) -> Version | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE hash = ? ORDER BY created LIMIT 1", (hash_,)
        ).fetchone()
        return None if row is None else _version(row)

    def object_refs(self, obj: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM versions WHERE object = ?", (obj,)).fetchone()
        return int(row[0])

    def all_versions(self) -> Iterator[Version]:
        for row in self.db.execute(f"SELECT {_COLUMNS} FROM versions ORDER BY path, created"):
            yield _version(row)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM versions").fetchone()[0])


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _apply_record(db: sqlite3.Connection, journal: str, rec: dict[str, Any]) -> None:
    """Replay one journal record; every kind is idempotent and order-tolerant."""
    kind = rec.get("t")
    if kind == "put":
        db.execute(
            f"INSERT OR IGNORE INTO versions ({_COLUMNS}, journal) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (
                rec["vid"],
                rec["path"],
                rec["object"],
                int(rec.get("offset", 0)),
                int(rec["length"]),
                int(rec["size"]),
                rec.get("mtime"),
                rec.get("mode"),
                rec.get("mime"),
                rec["hash"],
                rec["header_hash"],
                bytes.fromhex(rec["wrapped_key"]),
                rec["key_id"],
                float(rec["created"]),
                rec.get("derived_from"),
                json.dumps(sorted(set(rec.get("tags", [])))),
                rec.get("notes", ""),
                journal,
            ),
        )
    elif kind == "rm":
        # Only versions created before the removal: replay order between two
        # machines' journals cannot hide a later upload.
        db.execute(
            "UPDATE versions SET deleted = ? WHERE path = ? AND deleted IS NULL AND created <= ?",
            (float(rec["time"]), rec["path"], float(rec["time"])),
        )
    elif kind == "restore":
        db.execute(
            "UPDATE versions SET deleted = NULL WHERE path = ? AND created <= ?",
            (rec["path"], float(rec["time"])),
        )
    elif kind == "purge":
        db.executemany("DELETE FROM versions WHERE vid = ?", [(v,) for v in rec["vids"]])
    elif kind == "tag":
        row = db.execute("SELECT tags FROM versions WHERE vid = ?", (rec["vid"],)).fetchone()
        if row is not None:
            tags = (set(json.loads(row[0])) | set(rec.get("add", []))) - set(rec.get("remove", []))
            db.execute(
                "UPDATE versions SET tags = ? WHERE vid = ?", (json.dumps(sorted(tags)), rec["vid"])
            )
    elif kind == "note":
        db.execute("UPDATE versions SET notes = ? WHERE vid = ?", (rec["text"], rec["vid"]))
    # Unknown kinds come from a newer livedata: skip them rather than fail.
