"""The index file itself: telling a damaged one, moving it aside, rebuilding
it aside and swapping it in, and reading it from a read-only home.

The index is a cache (DESIGN §2): ``sync --rebuild`` and ``doctor --fix``
recover from any damage by rebuilding it from the store.  A rebuild writes a
new file beside the index (``index.sqlite.rebuild``) and renames it over the
index only once it is complete, so a killed rebuild leaves the old index in
use, never a partial one that ``ls`` or ``download prefix/`` would read as
the whole vault.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from livedata_cli.errors import IndexDamaged
from livedata_cli.index.damage import (
    FIX,
    as_index_error,
    check_header,
    connect_read_only,
    damaged,
    read_only_error,
)

if TYPE_CHECKING:
    from livedata_cli.index.core import Index

__all__ = [
    "FIX", "REBUILD_SUFFIX", "REBUILT", "as_index_error", "aside", "check_header", "connect_read_only",
    "damaged", "move_aside", "open_recovering", "read_only_error", "swap_in",
]

REBUILD_SUFFIX = ".rebuild"
# Tables a rebuild fills from the store's journals; every other table (audit
# trail, pending uploads, pinned keys, meta...) is carried over from the old index.
REBUILT = frozenset({"versions", "journals", "migrations"})


def move_aside(path: Path) -> Path:
    """Rename a damaged index (and its WAL files) out of the way; returns where it went."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def _remove(path: Path) -> None:
    for name in (str(path), f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def aside(current: Index) -> Index:
    """A new, empty index beside ``current`` for a rebuild, with the tables a
    rebuild does not fill copied over (as far as they can be read)."""
    from livedata_cli.index.core import Index

    if current.swap_to is not None:  # already a new index (the old one was damaged)
        return current
    tmp = current.path.with_name(current.path.name + REBUILD_SUFFIX)
    _remove(tmp)  # a killed rebuild's leftover
    fresh = Index(tmp)
    fresh.replaces, fresh.swap_to = current, current.path
    kept = [
        r[0]
        for r in fresh.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r[0] not in REBUILT and not r[0].startswith(("sqlite_", "search_fts"))
    ]
    for table in kept:
        try:
            rows = current.db.execute(f'SELECT * FROM "{table}"').fetchall()
        except sqlite3.DatabaseError:
            fresh.damaged_tables.append(table)
            continue
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            try:
                with fresh.write() as db:
                    db.executemany(f'INSERT OR IGNORE INTO "{table}" VALUES ({marks})', [tuple(r) for r in rows])
            except sqlite3.DatabaseError:  # a newer livedata's columns: the rebuild does without them
                fresh.damaged_tables.append(table)
    return fresh


def swap_in(fresh: Index) -> Index:
    """Put a complete rebuilt index in place of the one it replaces (one
    rename), and open it."""
    from livedata_cli.index.core import Index

    old, target = fresh.replaces, fresh.swap_to
    assert target is not None
    fresh.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fresh.close()
    fd = os.open(fresh.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old is not None:
        with contextlib.suppress(sqlite3.DatabaseError):
            old.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        old.close()
    if fresh.damaged_tables or old is None:  # keep what could not be read, for a closer look
        with contextlib.suppress(OSError):
            move_aside(target)
    for suffix in ("-wal", "-shm"):  # the old file's: never to be read with the new one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    os.replace(fresh.path, target)
    _remove(fresh.path)
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return Index(target)


def open_recovering(path: Path) -> Index:
    """The index at ``path``, or, when it is damaged, a new empty one beside it
    that :func:`swap_in` puts in its place (the damaged one is moved aside)
    once a rebuild completes: for ``sync --rebuild`` and ``doctor --fix``.  A
    rebuild that fails (a wrong passphrase) leaves the damaged index where it
    was, still saying what to do, never an empty one."""
    from livedata_cli.index.core import Index

    try:
        return Index(path)
    except IndexDamaged:
        tmp = path.with_name(path.name + REBUILD_SUFFIX)
        _remove(tmp)
        fresh = Index(tmp)
        fresh.swap_to = path
        return fresh
