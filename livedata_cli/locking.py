"""The vault's locks: one writer at a time on this machine, and lock objects
in the store for every machine that shares it.

``flock`` is released by the kernel when its holder dies, so a lock left by a
killed run (``kill -9``, a reboot) is taken over by the next run with no stale
file to clean.  The lock file names its holder, for the waiting message.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

from livedata_cli.errors import (
    LivedataError,
    LockHeld,
    LockLost,
    NotFound,
)


@contextmanager
def serialised(path: Path) -> Iterator[None]:
    """Wait for, then hold, the lock at ``path``: one process of this machine at a time."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
        # The lock may be in the store (a folder store's): the machine by its tag, not its name.
        note = f"pid {os.getpid()} on machine {host_tag()} since {time.strftime('%H:%M:%S')}".encode()
        with suppress(OSError):  # for the waiting message only: a full disk must not stop a purge
            os.pwrite(fd, note.ljust(200), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- store locks: every machine that shares a store ---------------------------------
#
# The flock above serialises the commands of one machine.  Machines that share
# a store (two laptops on one S3 bucket or API account, two homes on one NFS
# folder) see each other only through the store, so every command that writes
# data takes a lock object there too, as restic does: ``locks/<name>`` holding
# who took it, whether it is exclusive and when it was last refreshed.
# Writers (upload, conversions, password changes) hold shared locks, which do
# not exclude each other; commands that delete data (``prune``, ``rm --purge``)
# hold an exclusive one, which excludes every other lock.  A lock is created
# with the store's create-only put, and only then are the others listed: of
# two commands that start together at least one sees the other and backs off.

LOCK_PREFIX = "locks/"
# A lock not refreshed for this long is stale (its holder died or hangs).
STALE_AFTER = 600.0


def stale_after() -> float:
    """Seconds after which an unrefreshed lock is stale (``LIVEDATA_LOCK_STALE_AFTER``)."""
    raw = os.environ.get("LIVEDATA_LOCK_STALE_AFTER", "")
    try:
        value = float(raw) if raw else STALE_AFTER
    except ValueError:
        from livedata_cli.errors import UsageError

        raise UsageError("LIVEDATA_LOCK_STALE_AFTER must be a number of seconds") from None
    return max(value, 1.0)


def _read_first(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _tag(kind: str, value: str) -> str:
    """A short digest: the store learns that two locks come from one machine, not its name."""
    import hashlib

    return hashlib.sha256(f"livedata/v1/lock-{kind}\0{value}".encode()).hexdigest()[:16]


def host_tag() -> str:
    return _tag("host", _read_first("/etc/machine-id") or socket.gethostname())


def boot_tag() -> str:
    return _tag("boot", _read_first("/proc/sys/kernel/random/boot_id") or "unknown")


def _process_start(pid: int) -> str:
    """The start time of a process (Linux), so a reused pid is not taken for the holder."""
    stat = _read_first(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether a process of this machine runs (``start``: its start time, so a reused pid is not taken for it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or not _process_start(pid) or _process_start(pid) == start


_FIELDS: dict[str, tuple[type, ...]] = {
    "exclusive": (bool,),
    "command": (str,),
    "host": (str,),
    "boot": (str,),
    "pid": (int,),
    "start": (str,),
    "created": (int, float),
    "refreshed": (int, float),
}


def parse_lock(blob: bytes) -> dict[str, Any] | None:
    """A lock object's fields, or None when it is not one livedata wrote (the
    store is untrusted: anything may be there)."""
    try:
        info = json.loads(blob)
    except (ValueError, RecursionError):
        return None
    if not isinstance(info, dict):
        return None
    out: dict[str, Any] = {}
    for name, types in _FIELDS.items():
        value = info.get(name)
        if not isinstance(value, types) or (name != "exclusive" and isinstance(value, bool)):
            return None
        if name in ("created", "refreshed"):
            try:
                value = float(value)  # type: ignore[arg-type]
            except OverflowError:
                return None
            if not math.isfinite(value):
                return None
        out[name] = value
    out["command"] = out["command"][:40]
    return out


class LockStore(Protocol):
    """What a store lock needs of a store (``stores.ObjectStore`` has it; this
    module sits below the stores, so it names only these)."""

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...


class StoreLock:
    """A lock object in the store, refreshed by a thread while it is held.

    A lock is stale when its holder is a dead process of this machine, or when
    it was not refreshed for ``stale_after()`` seconds, by its own clock time
    or by what this process saw.  A command that goes on against a stale lock
    deletes it first, so its holder, if it ever wakes up, finds its lock gone
    and stops before writing a journal (:meth:`check`).
    """

    def __init__(self, store: LockStore, *, exclusive: bool, command: str, notice: Callable[[str], None]) -> None:
        self.store = store
        self.exclusive = exclusive
        self.command = command
        self.notice = notice
        self.key = ""
        self.started = 0.0
        self._stale = stale_after()
        self._refreshed = 0.0  # monotonic time of the last write of our lock that succeeded
        self._lost = False
        self._seen: dict[str, tuple[bytes, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host, self._boot = host_tag(), boot_tag()
        self._start = _process_start(os.getpid())

    # -- the lock object -------------------------------------------------------
    def _body(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "exclusive": self.exclusive,
                "command": self.command,
                "host": self._host,
                "boot": self._boot,
                "pid": os.getpid(),
                "start": self._start,
                "created": self.started,
                "refreshed": time.time(),
            },
            separators=(",", ":"),
        ).encode()

    def _describe(self, info: dict[str, Any]) -> str:
        where = f"pid {info['pid']} on this machine" if info["host"] == self._host else "another machine"
        try:
            since = time.strftime("%H:%M:%S", time.localtime(info["created"]))
        except (OverflowError, OSError, ValueError):
            since = "an unknown time"
        kind = "exclusive" if info["exclusive"] else "shared"
        command = "".join(c if c.isprintable() else "?" for c in info["command"]) or "livedata"
        return f"{command} ({kind} lock, {where}, since {since})"

    def _stale_lock(self, key: str, blob: bytes, info: dict[str, Any] | None) -> bool:
        now = time.monotonic()
        first = self._seen.get(key)
        if first is None or first[0] != blob:
            self._seen[key] = first = (blob, now)
        if now - first[1] >= self._stale:
            return True  # seen unchanged for the whole stale time
        if info is None:
            return False  # unreadable: stale only once seen unchanged that long
        if info["host"] == self._host:
            if info["boot"] != self._boot:
                return True  # taken before this machine last booted
            pid = info["pid"]
            if 0 < pid < 2**22 and pid != os.getpid() and not process_alive(pid, info["start"]):
                return True
        return time.time() - float(info["refreshed"]) > self._stale

    def _conflicts(self) -> list[str]:
        """Live locks that exclude ours; stale ones in the way are deleted."""
        found: list[str] = []
        for key in list(self.store.list(LOCK_PREFIX)):
            if key == self.key:
                continue
            blob: bytes | None
            try:
                blob = self.store.get_bytes(key)
            except NotFound:
                # Gone, or rewritten by its holder's refresh since the listing
                # (a store that caches where a name lives): look once more.
                try:
                    blob = self.store.get_bytes(key) if self.store.exists(key) else None
                except NotFound:
                    blob = None
                if blob is None:
                    continue
            info = parse_lock(blob)
            conflicting = self.exclusive or info is None or info["exclusive"]
            if not conflicting:
                continue
            if self._stale_lock(key, blob, info):
                self.store.delete(key)
                continue
            found.append(self._describe(info) if info is not None else f"an unreadable lock object {key}")
        return found

    # -- acquire, refresh, release ---------------------------------------------
    def acquire(self, *, wait: bool) -> None:
        """Take the lock: wait for conflicting locks to go (or go stale), or raise
        :class:`LockHeld` (exit 7) when ``wait`` is false."""
        told = False
        delay = 0.05
        while True:
            self.started = time.time()
            self.key = f"{LOCK_PREFIX}{time.time_ns():020d}-{secrets.token_hex(8)}"
            self._refreshed = time.monotonic()  # before the write: a stall during it counts
            self.store.put_bytes(self.key, self._body(), exclusive=True)
            try:
                conflicts = self._conflicts()
            except BaseException:
                self.store.delete(self.key)
                raise
            if not conflicts:
                break
            self.store.delete(self.key)
            self.key = ""
            if not wait:
                raise LockHeld(f"the vault is locked by {conflicts[0]} (--no-wait given)")
            if not told:
                self.notice(f"livedata: waiting for the vault lock held by {conflicts[0]}")
                told = True
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
        self._thread = threading.Thread(target=self._refresh_loop, name="livedata-lock", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._stale / 5):
            self.refresh()

    def refresh(self) -> None:
        """Rewrite our lock with a new time, unless it may already count as stale:
        a lock cleared by another command is never brought back."""
        if self._lost or time.monotonic() - self._refreshed > self._stale / 2:
            self._lost = True
            return
        began = time.monotonic()
        try:
            if not self.store.exists(self.key):
                self._lost = True
                return
            self.store.put_bytes(self.key, self._body())
        except (LivedataError, OSError):
            return  # tried again at the next tick; held too long without one, it is lost
        if time.monotonic() - began > self._stale / 2:
            # Paused or stalled mid-write: the lock may have been cleared as stale
            # meanwhile, and this write brought it back.  It is not ours any more.
            self._lost = True
        else:
            self._refreshed = began  # the time written in it, not when the write ended

    def check(self, *, in_store: bool = True) -> None:
        """Raise :class:`LockLost` unless the lock is surely still ours: refreshed
        recently enough that nobody can have counted it stale, and (``in_store``)
        still in the store."""
        if not self._lost and in_store and not self.store.exists(self.key):
            self._lost = True
        # The age last: a pause during the store call above counts.
        if self._lost or time.monotonic() - self._refreshed > self._stale / 2:
            self._lost = True
        if self._lost:
            raise LockLost(
                f"this {self.command}'s lock in the store was cleared as stale by another command "
                "(the process was paused or cut off too long); nothing more was written"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.key:  # ours alone (a unique name), even when lost: nobody else needs it
            with suppress(LivedataError, OSError):  # left behind, it goes stale
                self.store.delete(self.key)


@contextmanager
def store_lock(
    store: LockStore, *, exclusive: bool, command: str, wait: bool, notice: Callable[[str], None]
) -> Iterator[StoreLock]:
    """Hold a lock object in the store for the ``with`` block."""
    lock = StoreLock(store, exclusive=exclusive, command=command, notice=notice)
    lock.acquire(wait=wait)
    try:
        yield lock
    finally:
        lock.release()
