"""The store lock every machine sharing a store sees, and the reserve that lets
a full folder store still take it; the test-only pause points of the vault.

A command that writes a journal holds the lock shared; a command that deletes
data (``prune``, ``rm --purge``) holds it exclusive (:mod:`livedata_cli.locking`).
Each journal write checks that the lock is still this command's (:func:`guard`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from livedata_cli import locking
from livedata_cli.errors import LivedataError
from livedata_cli.stores import LocalFolder

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

# A folder store keeps this much space in its ``reserve`` file for deletions.
RESERVE_KEY = "reserve"
RESERVE_SIZE = 1024 * 1024


# -- test-only pause points ------------------------------------------------------
_paused: set[str] = set()


def pause_point(stage: str) -> None:
    """Stop this process (SIGSTOP) the first time it reaches ``stage``, when
    ``LIVEDATA_TESTONLY_PAUSE_AT`` names it: the concurrency tests resume it
    with SIGCONT once the other command has run, so a race is hit every time."""
    wanted = os.environ.get("LIVEDATA_TESTONLY_PAUSE_AT", "")
    if wanted and stage in wanted.split(",") and stage not in _paused:
        _paused.add(stage)
        from livedata_cli.index.core import others_writing

        while others_writing():  # stopped inside SQLite, it would stop every other command too
            time.sleep(0.005)
        # Sent to this thread, not the process: a process's SIGSTOP is taken by its
        # main thread, and until that thread runs, this one would run on past the point.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


# -- the lock, the reserve -------------------------------------------------------
def _root(vault: Vault) -> Path | None:
    return vault.store.root if isinstance(vault.store, LocalFolder) else None


def _free(root: Path) -> int:
    try:
        st = os.statvfs(root)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


def release_reserve(vault: Vault) -> bool:
    """Delete a folder store's reserve when the store is (nearly) full."""
    root = _root(vault)
    if root is None or not (root / RESERVE_KEY).exists():
        return False
    free = _free(root)
    if free < 0 or free >= RESERVE_SIZE:
        return False
    vault.store.delete(RESERVE_KEY)
    return True


def ensure_reserve(vault: Vault) -> None:
    """Write a folder store's reserve if it is missing and the store has room
    for it and as much again (best effort: a full store keeps going without)."""
    root = _root(vault)
    if root is None or (root / RESERVE_KEY).exists() or not (root / "config").exists():
        return
    if _free(root) < 2 * RESERVE_SIZE:
        return
    with contextlib.suppress(OSError, LivedataError):
        vault.store.put_bytes(RESERVE_KEY, bytes(RESERVE_SIZE))


@contextlib.contextmanager
def store_locked(vault: Vault, *, exclusive: bool, command: str, wait: bool) -> Iterator[locking.StoreLock]:
    """Hold a lock object in the vault's store (shared, or exclusive for
    commands that delete data); the vault's journal writes check it."""
    if exclusive:
        release_reserve(vault)
    try:
        lock_cm = locking.store_lock(
            vault.store, exclusive=exclusive, command=command, wait=wait, notice=vault.unlocker.notice
        )
        lock = lock_cm.__enter__()
    except OSError as e:
        if e.errno != errno.ENOSPC or not exclusive:
            raise
        # Full, and the reserve did not show it (another file filled the disk since): use it.
        if _root(vault) is None or not (_root(vault) / RESERVE_KEY).exists():  # type: ignore[operator]
            raise
        vault.store.delete(RESERVE_KEY)
        lock_cm = locking.store_lock(
            vault.store, exclusive=exclusive, command=command, wait=wait, notice=vault.unlocker.notice
        )
        lock = lock_cm.__enter__()
    previous = vault.store_lock
    vault.store_lock = lock
    try:
        yield lock
    except BaseException as e:
        vault.store_lock = previous
        if not lock_cm.__exit__(type(e), e, e.__traceback__):
            raise
    else:
        vault.store_lock = previous
        lock_cm.__exit__(None, None, None)
        ensure_reserve(vault)


def guard(vault: Vault) -> None:
    """Before (and after) a journal goes to the store: the lock is still ours."""
    lock = vault.store_lock
    if lock is not None:
        lock.check()


def guard_fast(vault: Vault) -> None:
    """Before each deletion: the lock was refreshed recently (no store call)."""
    lock = vault.store_lock
    if lock is not None:
        lock.check(in_store=False)
