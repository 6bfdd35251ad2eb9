"""The vault's write lock: one writer at a time on this machine.

``flock`` is released by the kernel when its holder dies, so a lock left by a
killed run (``kill -9``, a reboot) is taken over by the next run with no stale
file to clean.  The lock file names its holder, for the waiting message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from livedata_cli.errors import LockHeld


@contextmanager
def exclusive(path: Path, *, wait: bool, notice: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock at ``path``; wait for it, or raise :class:`LockHeld` (exit 7)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise LockHeld(f"the vault is locked by {holder} (--no-wait given)") from None
            notice(f"livedata: waiting for the vault lock held by {holder}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
