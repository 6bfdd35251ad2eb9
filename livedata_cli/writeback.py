"""Writing store objects with bounded dirty data: writeback started behind the writer.

A folder store fsyncs every object before a journal names it. Written plainly,
a gigabyte object sits dirty in the page cache until that fsync, which then
waits for the whole gigabyte at once, after the stream is done instead of while
it runs.

:class:`Behind` wraps an object being written so that, every :data:`WINDOW`
bytes, the kernel is asked to start writing the window just written
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait), and the
writer waits for the window written :data:`LAG` bytes earlier to reach the
disk. The disk then works while the writer encrypts, and the fsync at the end
finds at most ``LAG + WINDOW`` bytes dirty.

Downloads are not written this way: they are not fsynced, and waiting for the
disk made a download as slow as the disk where ``cp`` and ``age`` only fill the
page cache. This is not durability either: ``sync_file_range`` neither flushes
the disk's cache nor writes metadata, so the store still fsyncs. Where
``sync_file_range`` is missing (not Linux) or refused (a file system without
it), the wrapper writes plainly.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Final, cast

__all__ = ["LAG", "WINDOW", "Behind", "created", "sync_file_range"]

# Writeback starts once this many bytes are written since it last started: big
# enough that the calls cost nothing against the data, small enough that the
# disk starts early. Files smaller than this never call the kernel at all.
WINDOW: Final = 8 << 20
# The writer waits for data older than this many bytes to be on the disk:
# dirty data of one file stays under LAG + WINDOW.
LAG: Final = 32 << 20

_WAIT_BEFORE: Final = 1
_WRITE: Final = 2
_WAIT_AFTER: Final = 4

# What says "no writeback control here", not "the write failed".
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.ESPIPE, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

_SyncFileRange = Callable[[int, int, int, int], None]
_loaded: list[_SyncFileRange | None] = []
_load_lock = threading.Lock()


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    """``sync_file_range(2)`` through libc (Python's :mod:`os` has no binding);
    OSError when it fails, including where the system has none."""
    call = _libc_call()
    if call is None:
        raise OSError(errno.ENOSYS, "sync_file_range is not available on this system")
    call(fd, offset, length, flags)


def _libc_call() -> _SyncFileRange | None:
    """Load the libc function once, on the first big file (ctypes costs ~8 ms to import)."""
    if _loaded:
        return _loaded[0]
    with _load_lock:
        if not _loaded:
            _loaded.append(_load())
    return _loaded[0]


def _load() -> _SyncFileRange | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def call(fd: int, offset: int, length: int, flags: int) -> None:
        if fn(fd, offset, length, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


class Behind:
    """A writable file whose data is written back to the disk behind the writer.

    It forwards everything to the file it wraps; ``write`` also starts and
    waits for writeback as described in the module docstring. The file's
    position must start at 0 and move only by writes (a fresh file written
    front to back, as a store writes its objects).
    """

    def __init__(self, f: BinaryIO, *, window: int = WINDOW, lag: int = LAG) -> None:
        self._f = f
        self._fd = f.fileno()
        self._window = window
        self._lag = lag
        self._offset = 0  # bytes handed to write()
        self._started = 0  # writeback started for [0, started)
        self._waited = 0  # [0, waited) is on the disk
        self._on = True

    def write(self, data: Any) -> int:
        n: int | None = self._f.write(data)
        if n is None:  # a non-blocking file: nothing to track
            return n  # type: ignore[return-value]
        self._offset += n
        if self._on and self._offset - self._started >= self._window:
            self._writeback()
        return n

    def _writeback(self) -> None:
        # What a buffered file still holds is not in the kernel yet: start
        # writeback only for what is (a range not yet written is skipped).
        try:
            sync_file_range(self._fd, self._started, self._offset - self._started, _WRITE)
            self._started = self._offset
            older = self._started - self._lag
            if older - self._waited >= self._window:
                sync_file_range(
                    self._fd, self._waited, older - self._waited, _WAIT_BEFORE | _WRITE | _WAIT_AFTER
                )
                self._waited = older
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                # A write error (EIO, ENOSPC) is reported once per file: swallowed
                # here, the store's fsync would never see it.
                raise
            self._on = False  # not here (no such call, a pipe, a file system without it)

    def fileno(self) -> int:
        return self._fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def created(f: BinaryIO) -> BinaryIO:
    """``f``, a regular file this process just created, wrapped in :class:`Behind`
    (no ``fstat``: an upload of many small files makes one per file)."""
    return cast(BinaryIO, Behind(f))
