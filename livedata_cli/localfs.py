"""The local side of uploads and restores: vault paths, walking a folder
(files, symlinks, folders; excludes and ignore files), and writing a restored
entry without ever leaving the target folder."""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import io
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NoReturn, cast

from livedata_cli import interrupt, names
from livedata_cli.errors import (
    IntegrityError,
    LivedataError,
    Skipped,
    UsageError,
)


@dataclass(frozen=True)
class UploadSource:
    """One entry to store: a local path (or ``-`` for stdin), its vault path, its kind."""

    local: str
    path: str
    kind: str = "file"  # file, symlink or dir
    stat: os.stat_result | None = None  # from the walk: lets an unchanged file go unopened


Fail = Callable[[str, LivedataError | OSError], None]


# -- vault paths ------------------------------------------------------------------
def clean_vault_path(path: str, *, folder: bool = False) -> str:
    """Check a user-given vault path: relative, ``/``-separated, no ``..``.
    Bytes of a typed name that are not UTF-8 are kept exactly (names.py)."""
    path = names.from_argument(path)
    if "\x00" in path:  # a backslash is an ordinary character of a POSIX name, as the walk stores it
        raise UsageError(f"invalid vault path {path!r}")
    if path.startswith("/"):
        raise UsageError(f"vault paths are relative: {path!r} starts with '/'")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UsageError(f"vault paths may not contain '..': {path!r}")
    cleaned = "/".join(parts)
    if folder and cleaned:
        cleaned += "/"
    return cleaned


def safe_target(root: Path, relative: str) -> Path:
    """Where a vault path lands under ``root``; never outside it, whatever the name
    and whatever symlinks already sit in the target folder."""
    return Targets(root).place(relative)[0]


def _joined(root: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or "\x00" in p for p in parts) or relative.startswith("/"):
        raise IntegrityError(f"refusing to write unsafe path {relative!r} outside {root}")
    return root.joinpath(*(names.to_local(p) for p in parts))


class Targets:
    """:func:`safe_target` for the many entries of one restore: the root's real
    path is worked out once and each folder's once (two ``realpath`` walks a
    file cost more than writing a small file), and each folder is created once.

    What a cached answer rests on changes only when a folder on the way
    becomes a symlink: the restore that makes a symlink calls :meth:`forget`,
    so an entry under a link it just made is checked against the link."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root)
        # A vault folder (the part of a name before its last '/') -> its local
        # folder, once that was found under the root: its names are safe too.
        self._inside: dict[str, Path] = {}
        self._made: set[Path] = set()  # folders created (or found) by this restore

    def place(self, relative: str) -> tuple[Path, Path]:
        """The target and the folder it goes in: the same folder object for every
        entry of a folder, so sets of folders need not hash a new path each time."""
        folder, _, name = relative.rpartition("/")
        # The last part of the path as it stands, in a folder named the same way as before.
        plain = name not in ("", ".", "..") and "\x00" not in name and not relative.startswith("/")
        parent = self._inside.get(folder) if plain else None
        if parent is not None:
            return parent / names.to_local(name), parent
        target = _joined(self.root, relative)
        parent = target.parent
        real_parent = os.path.realpath(parent)
        if os.path.commonpath([self._real_root, real_parent]) != self._real_root:
            raise IntegrityError(f"refusing to write {relative!r}: it leads outside {self.root}")
        if plain:
            self._inside[folder] = parent
        return target, parent

    def make_folder(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, top down in a loop:
        ``mkdir(parents=True)`` recurses once a level, and a vault path can
        be thousands of levels deep."""
        if folder in self._made:
            return
        missing: list[Path] = []
        here = folder
        while here not in self._made and not os.path.isdir(here) and here.parent != here:
            missing.append(here)
            here = here.parent
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise
        self._made.add(folder)

    def forget(self) -> None:
        """A symlink was made under the root: check every folder again."""
        self._inside.clear()
        self._made.clear()


# -- planning -----------------------------------------------------------------------
def read_ignore_file(path: str) -> list[str]:
    """Patterns from an ignore file: one glob a line, ``#`` comments, blank lines skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read exclude file {path}: {e.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def plan_upload(
    locals_: list[str], *, as_path: str | None, recursive: bool, excludes: list[str], fail: Fail
) -> list[UploadSource]:
    """Turn command-line paths into (local path, vault path) pairs; bad ones go to ``fail``."""
    if as_path is not None and len(locals_) > 1 and not as_path.endswith("/"):
        raise UsageError("--as must end with '/' when several paths are uploaded")
    plan: list[UploadSource] = []
    for local in dict.fromkeys(locals_):  # a path given twice is stored once
        if local == "-":
            if not as_path:
                raise UsageError("uploading stdin ('-') needs --as VAULT_PATH")
            if as_path.endswith("/"):
                raise UsageError(f"--as {as_path!r} names a folder: stdin ('-') needs a file's vault path")
            plan.append(UploadSource("-", _file_path(as_path, as_path)))
            continue
        try:
            st = os.stat(local)
        except OSError as e:
            fail(local, e)
            continue
        # The name as given (a symlink's own, not its target's); "." and ".." their folder's.
        base = names.from_local(os.path.basename(os.path.abspath(local)))
        if stat.S_ISDIR(st.st_mode):
            if not recursive:
                fail(local, UsageError("is a folder: add --recursive"))
                continue
            prefix = clean_vault_path(as_path if as_path is not None else base, folder=True)
            plan.extend(
                UploadSource(full, prefix + names.from_local(rel), kind, st)
                for full, rel, kind, st in walk(local, excludes, fail)
            )
        elif stat.S_ISREG(st.st_mode):
            if as_path is None:
                target = base
            elif as_path.endswith("/") or as_path == "":
                target = clean_vault_path(as_path, folder=True) + base
            else:
                target = as_path
            plan.append(UploadSource(local, _file_path(target, as_path), stat=st))
        else:
            fail(local, UsageError("is not a regular file or folder"))
    return plan


def _file_path(target: str, as_path: str | None) -> str:
    """A file's vault path; never "" (the vault root), which no download could write."""
    path = clean_vault_path(target)
    if not path:
        raise UsageError(f"--as {as_path!r} names the vault root, not a file: give a file name, or a folder ending in '/'")
    return path


def glob_selects(rel: str, includes: list[str], excludes: list[str]) -> bool:
    """Whether a ``/``-relative path passes ``--include``/``--exclude`` globs, matched
    as upload's excludes are (a glob without ``/`` against any name, one with ``/``
    against the path) and against every folder above it, so ``--exclude cache``
    leaves out everything under a ``cache`` folder."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]

    def hit(globs: list[str]) -> bool:
        return any(
            fnmatch.fnmatchcase(c, g) or fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], g) for c in candidates for g in globs
        )

    return (not includes or hit(includes)) and not hit(excludes)


def walk(
    root: str, excludes: list[str], fail: Fail
) -> Iterator[tuple[str, str, str, os.stat_result | None]]:
    """Entries under ``root`` as (full path, ``/``-relative path, kind, stat of a
    file), in sorted order.

    Folders come before their contents; symlinks are kept as links, never
    followed; sockets, FIFOs and devices are reported to ``fail`` and skipped.
    """

    def excluded(rel: str, name: str) -> bool:
        return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in excludes)

    stack = [("", root)]
    while stack:
        rel_dir, full_dir = stack.pop()
        try:
            entries = sorted(os.scandir(full_dir), key=lambda e: e.name)
        except OSError as e:
            fail(full_dir, e)
            continue
        subdirs = []
        for entry in entries:
            rel = rel_dir + entry.name
            if excluded(rel, entry.name):
                continue
            try:
                if entry.is_symlink():
                    yield entry.path, rel, "symlink", None
                elif entry.is_dir(follow_symlinks=False):
                    yield entry.path, rel, "dir", None
                    subdirs.append((rel + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield entry.path, rel, "file", entry.stat(follow_symlinks=False)
                else:
                    fail(entry.path, Skipped("is a special file (socket, FIFO or device): skipped"))
            except OSError as e:
                fail(entry.path, e)
        stack.extend(reversed(subdirs))


# -- restoring ------------------------------------------------------------------------
# Temporary files of a restore sit beside their target under a short, fixed-length
# name (31 bytes), so any name the file system holds restores, and a rerun knows
# the litter of a killed one by its name.
_TEMP_NAME = re.compile(r"\.livedata-[0-9a-f]{16}\.(part|link)\Z")
# A ``.link`` temporary older than this is litter (a live one lasts microseconds).
_STALE_LINK = 60.0


def _temp_name(suffix: str) -> str:
    return f".livedata-{secrets.token_hex(8)}.{suffix}"


def default_mode() -> int:
    """The mode a new file gets by default here: 0666 less the umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the racy way
    os.umask(mask)
    return 0o666 & ~mask


def create_temporary(folder: Path) -> tuple[Path, int]:
    """A new empty file in ``folder`` to write and then rename into place: its
    path and a descriptor open for writing.  It is 0600, created exclusively
    under a name nobody can guess (never through a link planted there), locked
    (``flock``) so that :func:`remove_stale_temps` leaves it alone, and known to
    :mod:`livedata_cli.interrupt` until the caller calls ``interrupt.kept``."""
    while True:
        tmp = folder / _temp_name("part")
        interrupt.temporary(tmp)  # known before it exists: a Ctrl-C at any point removes it
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            interrupt.kept(tmp)  # not ours
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return tmp, fd
        # Another restore's cleaner locked and removed it before this lock: a new one.
        os.close(fd)
        interrupt.kept(tmp)


def write_file(
    target: Path,
    write: Callable[[BinaryIO], int],
    *,
    mode: int | None = None,
    mtime: float | None = None,
    fresh: bool = False,
) -> int:
    """Write a file through ``write`` (which returns once its data authenticated),
    to a temporary file renamed into place: a failure leaves no partial file.

    ``fresh``: the caller made the folder (a restore's planner) and whatever
    is at ``target`` (nothing, a file, a link, a pipe) is replaced by the
    rename, never opened; ``write`` gets the file unbuffered (its writes go
    straight to the file, each written whole).

    The temporary file is created 0600 and exclusively (``O_EXCL``), so no other
    local user can read plaintext while it is written; it gets its final mode
    only after the data authenticated.  It stays locked (``flock``) until it is
    renamed, which tells :func:`remove_stale_temps` it is in use.

    Otherwise a target that is a device or a pipe (``-o /dev/null``, a FIFO,
    ``/dev/stdout``) is written as a stream instead: renaming over it would
    replace the device node itself.  An error names ``target``, not the
    temporary file.
    """
    if not fresh:
        try:
            st: os.stat_result | None = os.stat(target)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            with open(target, "wb") as out:
                return write(out)
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp, fd = create_temporary(target.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, os.fspath(target)) from None
    try:
        with cast(BinaryIO, _FdWriter(fd)) if fresh else os.fdopen(fd, "wb") as out:
            n = write(out)
            out.flush()
            os.fchmod(out.fileno(), (default_mode() if mode is None else mode) & 0o7777)
            if mtime is not None:
                os.utime(out.fileno(), (mtime, mtime))
            try:
                os.replace(tmp, target)  # still locked: a cleaner never takes it for litter
            except OSError as e:  # a folder there, or its folder gone
                raise OSError(e.errno, e.strerror, os.fspath(target)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        interrupt.kept(tmp)
    return n


class _FdWriter(io.RawIOBase):
    """A file descriptor as a writable file, each write written whole: without
    the buffer, ``isatty`` and ``lseek`` calls of ``os.fdopen`` (a restore of
    many small files pays those per file)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def remove_stale_temps(folder: Path) -> int:
    """Remove the temporary files that killed restores left in ``folder``
    (``.livedata-<16 hex>.part``, not locked by a running one); returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not _TEMP_NAME.match(entry.name):
            continue
        try:
            if entry.name.endswith(".link"):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) and time.time() - st.st_mtime > _STALE_LINK:
                    os.unlink(entry.path)
                    removed += 1
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a running restore holds it
                continue
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.lstat(entry.path)):
                    os.unlink(entry.path)
                    removed += 1
        finally:
            os.close(fd)
    return removed


def same_file(target: Path, size: int, mtime: float | None) -> bool:
    """Whether ``target`` is a regular file of this size and modification time
    (to the microsecond a restore sets it to): a candidate for being already restored."""
    try:
        st = os.lstat(target)
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == size
        and (mtime is None or abs(st.st_mtime - mtime) < 1e-6)
    )


def file_digest(path: Path, key: bytes) -> str:
    """The keyed hash of a local file's contents (as an upload computes it)."""
    from livedata_cli.crypto.wrap import KeyedHash

    hasher = KeyedHash(key)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def same_link(target: Path, link_to: str) -> bool:
    """Whether ``target`` is already a symlink to ``link_to``."""
    try:
        return os.readlink(target) == link_to
    except OSError:
        return False


def make_symlink(target: Path, link_to: str, mtime: float | None = None) -> None:
    """Create (or replace) a symlink atomically, with its own mtime; the link
    itself is never followed."""
    tmp = target.parent / _temp_name("link")
    os.symlink(link_to, tmp)
    try:
        if mtime is not None:
            os.utime(tmp, (mtime, mtime), follow_symlinks=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def set_folder_times_and_mode(path: Path, mtime: float | None, mode: int | None) -> None:
    """A restored folder's mode and time, through the folder itself: a symlink put
    in its place since (by anyone who can write beside it) is not followed."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if mode is not None:
            os.fchmod(fd, mode & 0o7777)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def path_of(ref: str) -> str:
    """The vault path a REF names, or "" when it cannot be one (an id, a link)."""
    try:
        return clean_vault_path(ref)
    except UsageError:
        return ""


def download_target(output: str | None, name: str) -> Path:
    """Where a downloaded file goes: ``output``, or into it when it is a folder
    (or ends with ``/``: one to make); without ``output``, ``name`` in the
    working folder."""
    target = Path(output) if output else Path(name)
    if target.is_dir() or (output or "").endswith("/"):
        target = target / name
    return target


def refuse_existing(target: Path) -> NoReturn:
    """A download never replaces a file without ``--overwrite``."""
    raise UsageError(f"{names.shown(str(target))} exists: add --overwrite or give -o PATH")
