"""Pack objects: many small files' containers in one store object.

A folder store pays a file creation, a rename and a directory entry per
object, and a backup of 10,000 small files would spend most of its time
there.  Small files (one segment, at most 1 MiB) are therefore appended to a
pack instead: ``data/<pack-id>`` is simply their v1 containers one after the
other.  Each member keeps its own random data key, salt and object id (its
data key is wrapped for that id, DESIGN §4); its record names the pack with
``pack``, ``offset`` and ``length``, and the record's header hash binds the
record to its container, so a record pointed at another member does not open.

A pack becomes visible in the store only when it is sealed, and the vault
seals before each journal, so a journal never refers to a pack that is not
whole; a killed upload leaves at most an unreferenced temporary file.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from typing import BinaryIO

from livedata_cli.stores import ObjectStore

# A pack is sealed once it holds this much; reading a member is one seek.
PACK_TARGET = 16 * 1024 * 1024


def packs_small_files(store: ObjectStore) -> bool:
    """Whether small files go into packs on this store (folder stores)."""
    return bool(getattr(store, "packs", False))


class PackWriter:
    """Appends containers to the current pack of one upload (thread-safe)."""

    def __init__(self, store: ObjectStore, target: int = PACK_TARGET) -> None:
        self._store = store
        self._target = target
        self._lock = threading.Lock()
        self._open: contextlib.ExitStack | None = None
        self._out: BinaryIO | None = None
        self._pack = ""
        self._size = 0

    def add(self, container: bytes | memoryview) -> tuple[str, int]:
        """Append one whole container; returns the pack id and its offset there."""
        with self._lock:
            if self._out is None:
                self._pack = secrets.token_hex(16)
                self._open = contextlib.ExitStack()
                self._out = self._open.enter_context(self._store.writer(f"data/{self._pack}"))
                self._size = 0
            offset = self._size
            self._out.write(container)
            self._size += len(container)
            pack = self._pack
            if self._size >= self._target:
                self._finish(None)
            return pack, offset

    def seal(self) -> None:
        """Make the current pack an object of the store (before a journal names it)."""
        with self._lock:
            self._finish(None)

    def discard(self, error: BaseException) -> None:
        """Drop the current pack unfinished: no journal will name it."""
        with self._lock:
            self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        if self._open is None:
            return
        stack, self._open, self._out = self._open, None, None
        if error is None:
            stack.close()
        else:
            stack.__exit__(type(error), error, error.__traceback__)
