"""Telling a damaged index file: its header checked before SQLite opens it, the
one-line error for damage found later, and a read-only look for a read-only home.

Kept apart from :mod:`livedata_cli.index.recovery` (which rebuilds an index,
and so opens one) so that opening an index needs nothing that opens one.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

from livedata_cli.errors import IndexDamaged

FIX = "run 'livedata sync --rebuild' or 'livedata doctor --fix' (the index is a cache: nothing is lost)"
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
    if pages and valid_for == change_counter and size < pages * page_size and not _has_log(path):
        raise damaged(path, f"truncated: {size} bytes where its header counts {pages * page_size}")


def _has_log(path: Path) -> bool:
    """Whether a write-ahead log with frames lies beside the file.  A checkpoint
    cut off (kill -9) after writing page 1, before the last pages, leaves a
    header that counts more pages than the file holds; SQLite reads those
    pages from the log, so that is no damage."""
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except OSError:
        return False


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
