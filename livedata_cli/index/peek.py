"""Looks at an index file without opening it as an :class:`~livedata_cli.index.core.Index`:
read-only, no migration, no write lock, and nothing but the standard library
imported, so a shell's Tab (livedata_cli/_start.py) and ``doctor`` can afford them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _read_only(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


def meta_value(path: Path, key: str, *, timeout: float = 5) -> str | None:
    """One ``meta`` entry (raises :class:`sqlite3.Error` on an unreadable index)."""
    db = _read_only(path, timeout)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def summary(path: Path, *, timeout: float = 5) -> tuple[list[str], list[str], int, set[str]]:
    """SQLite's quick check, the migrations applied (in order), the number of
    versions and the applied journals' names (raises :class:`sqlite3.Error`)."""
    db = _read_only(path, timeout)
    try:
        quick = [str(r[0]) for r in db.execute("PRAGMA quick_check")]
        applied = [str(r[0]) for r in db.execute("SELECT name FROM migrations ORDER BY rowid")]
        versions = int(db.execute("SELECT count(*) FROM versions").fetchone()[0])
        journals = {str(r[0]) for r in db.execute("SELECT name FROM journals")}
    finally:
        db.close()
    return quick, applied, versions, journals


def live_paths(path: Path, start: str, *, limit: int = 5000, timeout: float = 0.2) -> list[str]:
    """The newest live file paths that start with ``start``, in order, at most
    ``limit`` (raises :class:`sqlite3.Error`)."""
    db = _read_only(path, timeout)
    try:
        rows = db.execute(
            "SELECT DISTINCT path FROM versions WHERE path >= ? AND path < ? "
            "AND deleted IS NULL AND newest AND kind != 'dir' ORDER BY path LIMIT ?",
            (start, start + "\U0010ffff", limit),
        ).fetchall()
    finally:
        db.close()
    return [str(r[0]) for r in rows]
