"""Failures of the machine rather than of livedata: a full disk, a read-only
or vanished store, an unwritable home or download target.

Each becomes a :class:`LivedataError` with its documented exit code (DESIGN §6)
and one line naming the place that failed (the store, the index home or the
download target), never the source file that happened to be in hand:

- no space left (``ENOSPC``, ``EDQUOT``, SQLite's "database or disk is full"):
  exit 7, with the free space and, when known, how much was needed;
- the store read-only, not permitted, or gone (deleted, unmounted): exit 6;
- the index home not writable: exit 2 (fix the home, or point
  ``LIVEDATA_HOME`` elsewhere);
- a download target that cannot take the file: exit 2 (choose another ``-o``);
- a missing source file: exit 3.

Places are registered as they are opened (:func:`register`); an error's file
name says which one it hit.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from livedata_cli.errors import (
    LivedataError,
    LockHeld,
    NoSpace,
    NotFound,
    StoreUnreachable,
    UsageError,
)
from livedata_cli.sizes import human_size

STORE, HOME, TARGET = "the store", "the index home", "the download target"

# (label, folder, shown as): the longest matching folder wins.
_places: list[tuple[str, str, str]] = []

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV, errno.EIO)


def register(label: str, folder: str | os.PathLike[str], shown: str | os.PathLike[str] | None = None) -> None:
    """``folder`` (and everything below it) is ``label``; messages show ``shown``."""
    path = os.path.abspath(os.fspath(folder))
    entry = (label, path, os.fspath(shown) if shown is not None else path)
    if entry not in _places:
        _places.append(entry)


def reset() -> None:
    _places.clear()


def _place(filename: object) -> tuple[str, str, str] | None:
    if not isinstance(filename, str | bytes | os.PathLike):
        return None
    path = os.path.abspath(os.fsdecode(filename))
    best: tuple[str, str, str] | None = None
    for label, folder, shown in _places:
        if (path == folder or path.startswith(folder.rstrip("/") + "/")) and (
            best is None or len(folder) > len(best[1])
        ):
            best = (label, folder, shown)
    if best is None:
        from livedata_cli import settings

        home = os.path.abspath(settings.home())
        if path == home or path.startswith(home + "/"):
            best = (HOME, home, home)
    return best


def _statvfs(folder: str) -> os.statvfs_result | None:
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    try:
        return os.statvfs(folder)
    except OSError:
        return None


def _free(folder: str) -> int | None:
    st = _statvfs(folder)
    return None if st is None else st.f_bavail * st.f_frsize




_FEW_INODES = 64


def no_space(label: str, folder: str, shown: str, needed: int | None) -> NoSpace:
    st = _statvfs(folder)
    parts = []
    # Out of inodes: room for bytes, none for one more file.  A few may be free
    # again by now (the failed command's temporary files are gone).
    if st is not None and st.f_files and st.f_favail < _FEW_INODES:
        parts.append("no file entries (inodes) left")
    if st is not None:
        parts.append(f"{human_size(st.f_bavail * st.f_frsize)} free")
    if needed:
        parts.append(f"{human_size(needed)} needed")
    detail = f" ({', '.join(parts)})" if parts else ""
    return NoSpace(f"no space left on {label} {shown}{detail}: free some space and run the command again")


def is_fatal(e: BaseException) -> bool:
    """An error that would fail every later item of a batch too: the store or the
    home (full, read-only, gone) or a full target.  A batch stops at it."""
    if isinstance(e, LivedataError):
        return isinstance(e, NoSpace | StoreUnreachable)
    if isinstance(e, sqlite3.OperationalError):
        return translate(e) is not None
    if not isinstance(e, OSError):
        return False
    place = _place(e.filename)
    if e.errno in NO_SPACE:
        return True
    return place is not None and place[0] in (STORE, HOME) and e.errno in NOT_WRITABLE + GONE


def translate(e: BaseException, *, needed: int | None = None, place: str | None = None) -> LivedataError | None:
    """The documented error for an environment failure, or None for anything else
    (which stays a bug: exit 1).  ``place`` names the place when the error's
    file name does not (a write to an open file has none)."""
    if isinstance(e, sqlite3.OperationalError):
        text = str(e).lower()
        from livedata_cli import settings

        home = os.path.abspath(settings.home())
        full = "disk is full" in text or ("disk i/o error" in text and (_free(home) or 0) < 256 * 1024)
        if full:  # SQLite reports a full disk as an I/O error when its WAL cannot grow
            return no_space(HOME, home, home, needed)
        if "database is locked" in text:
            return LockHeld(
                f"the index in {home} stayed busy: another livedata process of this home held it "
                "for 30 s (a stopped or hung one?); try again once it has finished"
            )
        if "readonly database" in text or "unable to open database" in text:
            return UsageError(
                f"the index home {home} is not writable ({e}): make it writable, or set LIVEDATA_HOME to another folder"
            )
        return None
    if not isinstance(e, OSError) or e.errno is None:
        return None
    found = _place(e.filename)
    if found is None and place is not None:
        found = next(((lbl, f, s) for lbl, f, s in reversed(_places) if lbl == place), None)
    label, folder, shown = found if found is not None else ("", "", os.fsdecode(e.filename or ""))
    why = e.strerror or os.strerror(e.errno)
    if e.errno in NO_SPACE:
        if not label:  # a write without a file name, to no known place: the disk of the current folder
            label, folder, shown = "the disk of", os.getcwd(), shown or os.getcwd()
        return no_space(label, folder, shown, needed)
    if label == STORE:
        if e.errno in NOT_WRITABLE:
            return StoreUnreachable(f"the store {shown} cannot be written ({why}): is it mounted read-only?")
        if e.errno in GONE:
            return StoreUnreachable(f"the store {shown} is gone ({why}): is its disk mounted?")
        return None
    if label == HOME:
        if e.errno in NOT_WRITABLE + GONE:
            return UsageError(
                f"the index home {shown} is not writable ({why}): make it writable, or set LIVEDATA_HOME to another folder"
            )
        return None
    if label == TARGET:
        if e.errno in NOT_WRITABLE + GONE + (errno.EISDIR, errno.EINVAL, errno.EXDEV, errno.ENAMETOOLONG):
            entry = os.fsdecode(e.filename) if found is not None and e.filename is not None else shown
            if os.path.abspath(entry) != os.path.abspath(shown):  # one file of a restored tree
                from livedata_cli.names import shown as escaped

                return UsageError(f"cannot write {escaped(entry)} ({why})")
            return UsageError(f"cannot write {shown} ({why}): choose another -o")
        return None
    if e.errno == errno.ENOENT:
        return NotFound(f"{shown}: {why}" if shown else why)
    if e.errno in (*NOT_WRITABLE, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return UsageError(f"{shown}: {why}" if shown else why)
    return None
