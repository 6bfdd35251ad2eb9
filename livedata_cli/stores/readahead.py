"""Reading members of packs from a remote store (S3, the API) in few requests.

A restore or a verify reads many members of a pack, one request each unless
the store keeps blocks of it: the first member read from a pack is one
request of its own bytes (a lone download fetches nothing more); from the
second on, the aligned blocks holding the member are fetched whole and kept
(at most BLOCKS of them, least recently used out), so 2,000 small files come
back in a few requests in whatever order the restore takes them.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, BinaryIO, cast

BLOCK = 4 * 1024 * 1024
BLOCKS = 4  # 16 MiB: a whole pack
MEMBER_MAX = 2 * 1024 * 1024  # members up to this size go through the blocks


class Readahead:
    """Blocks of pack objects, shared by the reads of a command (thread-safe).

    ``fetch(key, start, end)`` returns the object's bytes ``start..end`` (fewer
    at its end).  Packs never change once written (a repack writes new ones),
    and every member is authenticated by its reader, so a block is only a copy
    of ciphertext."""

    def __init__(self, fetch: Callable[[str, int, int], bytes]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._seen = ""  # the pack of the last read: a second read of it fetches blocks

    def read(self, key: str, offset: int, length: int) -> bytes:
        first, last = offset // BLOCK, (offset + length - 1) // BLOCK
        with self._lock:
            have = [self._blocks.get((key, b)) for b in range(first, last + 1)]
            if all(h is not None for h in have):
                for b in range(first, last + 1):
                    self._blocks.move_to_end((key, b))
                i = offset - first * BLOCK
                return b"".join(h for h in have if h is not None)[i : i + length]
            lone, self._seen = key != self._seen, key
        if lone:
            return self._fetch(key, offset, offset + length)
        data = self._fetch(key, first * BLOCK, (last + 1) * BLOCK)
        with self._lock:
            for b in range(first, last + 1):
                self._blocks[(key, b)] = data[(b - first) * BLOCK : (b - first + 1) * BLOCK]
                self._blocks.move_to_end((key, b))
            while len(self._blocks) > BLOCKS:
                self._blocks.popitem(last=False)
        i = offset - first * BLOCK
        return data[i : i + length]


class MemberReader(io.RawIOBase):
    """A member's bytes, at the positions they have in their pack."""

    def __init__(self, data: bytes, start: int) -> None:
        super().__init__()
        self._data = data
        self._start = start
        self._pos = start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._start + len(self._data)
        self._pos = offset
        return offset

    def readinto(self, buf: Any) -> int:
        out = memoryview(buf).cast("B")
        i = max(0, self._pos - self._start)
        n = max(0, min(len(out), len(self._data) - i))
        out[:n] = self._data[i : i + n]
        self._pos += n
        return n


def read_member(window: Readahead, key: str, offset: int, length: int) -> BinaryIO:
    """A member through the store's read-ahead window, as a stream at its pack positions."""
    return cast(BinaryIO, io.BufferedReader(MemberReader(window.read(key, offset, length), offset)))
