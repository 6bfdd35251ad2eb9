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
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from livedata_cli.errors import IndexDamaged

if TYPE_CHECKING:
    from livedata_cli.index.core import Index

FIX = "run 'livedata sync --rebuild' or 'livedata doctor --fix' (the index is a cache: nothing is lost)"
REBUILD_SUFFIX = ".rebuild"
# Tables a rebuild fills from the store's journals; every other table (audit
# trail, pending uploads, pinned keys, meta...) is carried over from the old index.
REBUILT = frozenset({"versions", "journals", "migrations"})
_HEADER = b"SQLite format 3\x00"


def damaged(path: Path, why: str) -> IndexDamaged:
    return IndexDamaged(f"the index {path} is damaged ({why}): {FIX}")


def check_header(path: Path) -> None:
    """Cheap checks before SQLite opens the file: an SQLite header, and no
    fewer pages than the header counts (a truncated file).  Damage deeper
    inside shows when a page is read (:func:`as_index_error`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return
    except OSError as e:
        raise damaged(path, e.strerror or str(e)) from None
    if not head:
        return  # a new, empty file: SQLite makes it a database
    if len(head) < 100 or not head.startswith(_HEADER):
        raise damaged(path, "not an SQLite database")
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged(path, "bad page size in its header")
    (change_counter,) = struct.unpack(">I", head[24:28])
    (pages,) = struct.unpack(">I", head[28:32])
    (valid_for,) = struct.unpack(">I", head[92:96])
    if pages and valid_for == change_counter and size < pages * page_size:
        raise damaged(path, f"truncated: {size} bytes where its header counts {pages * page_size}")


def as_index_error(e: BaseException) -> IndexDamaged | None:
    """The one-line error for SQLite finding a damaged page mid-command, or None."""
    if not isinstance(e, sqlite3.DatabaseError) or isinstance(e, sqlite3.OperationalError):
        return None
    text = str(e)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        from livedata_cli import settings

        return damaged(settings.home() / settings.INDEX_FILE, text)
    return None


def read_only_error(e: BaseException) -> bool:
    """Whether opening failed because the home (or the file) cannot be written."""
    text = str(e).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def connect_read_only(path: Path) -> sqlite3.Connection:
    """The index as it was last closed, for reading only (``immutable``: no
    WAL or lock files are needed, so a read-only home will do)."""
    db = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True, check_same_thread=False)
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return db


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
