"""Pack objects: many small files' containers in one store object.

A folder store pays a file creation, a rename and a directory entry per
object, and a backup of 10,000 small files would spend most of its time
there.  Small files (one segment, at most 1 MiB) are therefore appended to a
pack instead: ``data/<pack-id>`` is simply their v1 containers one after the
other.  Each member keeps its own random data key, salt and object id (its
data key is wrapped for that id, DESIGN §4); its record names the pack with
``pack``, ``offset`` and ``length``, and the record's header hash binds the
record to its container, so a record pointed at another member does not open.

Each member is followed by random bytes up to its Padmé size (:func:`padded`,
from PURBs, Nikitin et al. 2019: the size rounded so that only about
log log of its bits are left, at most 12 % more and 1.6 % on a tree of
7,800 real small files, ``bench/size_padding.py``).  Every member still
starts with the container magic, so the store can cut a pack at the members,
but a stretch from one member to the next gives only the size class, not the
file's size.  Readers take a member's ``offset`` and ``length`` from its
record and never see the padding.

A pack becomes visible in the store only when it is sealed, and the vault
seals before each journal, so a journal never refers to a pack that is not
whole; a killed upload leaves at most an unreferenced temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import secrets
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli import forked
from livedata_cli.crypto import container
from livedata_cli.crypto.wrap import keyed_hash, wrap_data_key
from livedata_cli.mime import sniff
from livedata_cli.stores import ObjectStore, RangedReads

if TYPE_CHECKING:
    from livedata_cli.index.files import Version

# A pack is sealed once it holds this much; reading a member is one seek.
PACK_TARGET = 16 * 1024 * 1024


def padded(n: int) -> int:
    """Padmé: ``n`` rounded up so that only its top O(log log n) bits are free."""
    if n < 2:
        return n
    e = n.bit_length() - 1  # floor(log2 n)
    s = e.bit_length()  # floor(log2 e) + 1
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def packs_small_files(store: ObjectStore) -> bool:
    """Whether small files go into packs on this store (folder, S3 and API stores)."""
    return store.packs


def open_range(store: ObjectStore, key: str, offset: int, length: int) -> BinaryIO:
    """``key`` positioned at ``offset``, for reading ``length`` bytes from there.

    A remote store fetches only that range (S3 ranged GETs, ``Range`` on the
    API store); a folder store simply seeks.  Positions stay those of the
    whole object, so a caller may seek within the range."""
    if isinstance(store, RangedReads):
        return store.open_range(key, offset, length)
    src = store.open(key)
    if offset:
        src.seek(offset)
    return src


def open_stored(store: ObjectStore, key: str, pack: str | None, offset: int, length: int) -> BinaryIO:
    """A version's container: its range of a pack, or its whole object."""
    return open_range(store, key, offset, length) if pack else store.open(key)


def check_size(store: ObjectStore, v: Version, sizes: dict[str, int]) -> None:
    """The stored object holds the version's container: a pack at least up to
    its member's end, an object of its own exactly (``sizes`` caches by key)."""
    from livedata_cli.errors import IntegrityError

    if v.store_key not in sizes:
        sizes[v.store_key] = store.size(v.store_key)
    size, end = sizes[v.store_key], v.offset + v.length
    if size < end or (size != end and not v.pack):
        raise IntegrityError(f"object {v.object} is {size} bytes, the record says {end}")


class Slice(io.RawIOBase):
    """The next ``length`` bytes of a stream: one member of a pack, read from its start."""

    def __init__(self, src: BinaryIO, length: int) -> None:
        self._src = src
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[: max(self._left, 0)]
        n = self._src.readinto(view) if view.nbytes else 0  # type: ignore[attr-defined]
        n = n or 0
        self._left -= n
        return int(n)


def share_copy_key(share_id: str) -> str:
    """The object a share of a packed file is copied to (its own, so that a
    presigned link or a server share hands out that member and nothing else).
    Derived from the share id, so ``prune`` knows it from the share's record."""
    return "data/" + hashlib.sha256(b"livedata/share-copy/" + share_id.encode()).hexdigest()[:32]


# Members are gathered in memory and handed to the store this much at a time:
# one write call per mebibyte, not two per member.
_WRITE_CHUNK = 1024 * 1024
# Padding bytes are cut from one read of the OS's random source this large
# (one getrandom call per many members, not one per member).
_PAD_POOL = 64 * 1024


class _Padding:
    """Random bytes for padding, read from ``os.urandom`` in blocks.  Padding is
    never a key or a nonce; the block is dropped in a forked child, so two
    processes never hand out the same bytes."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._pool = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if n > _PAD_POOL:
            return os.urandom(n)
        if self._pid != os.getpid():
            self._pid, self._pool, self._at = os.getpid(), b"", 0
        if self._at + n > len(self._pool):
            self._pool, self._at = os.urandom(_PAD_POOL), 0
        out = self._pool[self._at : self._at + n]
        self._at += n
        return out


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
        self._held = bytearray()  # members not yet handed to the store's writer
        self._padding = _Padding()
        # A pack lost to a failed write took members already answered for with
        # it: the next seal() fails, so that no journal names them.
        self._lost: BaseException | None = None
        self._lost_pack = ""

    def add(self, container: bytes | memoryview) -> tuple[str, int]:
        """Append one whole container; returns the pack id and its offset there."""
        with self._lock:
            if self._out is None:
                self._pack = secrets.token_hex(16)
                self._open = contextlib.ExitStack()
                self._out = self._open.enter_context(self._store.writer(f"data/{self._pack}"))
                self._size = 0
            offset = self._size
            length = memoryview(container).nbytes
            self._held += container
            self._held += self._padding.take(padded(length) - length)  # hides the size within its class
            self._size += padded(length)
            pack = self._pack
            try:
                if len(self._held) >= _WRITE_CHUNK:
                    self._write_held()
                if self._size >= self._target:
                    self._finish(None)
            except BaseException as e:
                self._lost, self._lost_pack = e, pack
                self._finish(e)
                raise
            return pack, offset

    def _write_held(self) -> None:
        assert self._out is not None
        held, self._held = self._held, bytearray()
        self._out.write(held)

    def seal(self) -> None:
        """Make the current pack an object of the store (before a journal names it)."""
        with self._lock:
            lost, self._lost = self._lost, None
            if lost is not None:
                self._finish(lost)
                raise OSError(getattr(lost, "errno", None) or errno.EIO, f"writing a pack failed: {lost}") from lost
            self._finish(None)

    def abandon(self, error: BaseException) -> set[str]:
        """Drop the open pack and forget a lost one (the store is full or gone):
        the ids of the packs not in the store, whose members no journal may
        name.  The packs sealed before them are whole, and their members kept."""
        with self._lock:
            gone = {self._lost_pack} if self._lost is not None else set()
            if self._open is not None:
                gone.add(self._pack)
            self._lost, self._lost_pack = None, ""
            self._finish(error)
            return gone

    def discard(self, error: BaseException) -> None:
        """Drop the current pack unfinished: no journal will name it."""
        with self._lock:
            self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        if self._open is None:
            return
        if error is None and self._held:
            try:
                self._write_held()
            except BaseException as e:
                self._finish(e)
                raise
        self._held = bytearray()
        stack, self._open, self._out = self._open, None, None
        if error is None:
            stack.close()
        else:
            stack.__exit__(type(error), error, error.__traceback__)


# -- sealing small files in worker processes ----------------------------------------
# Python runs one thread at a time, and a backup of many small files is mostly
# Python work per file.  On a machine with several cores the files are read,
# hashed and encrypted in forked worker processes (each with a fresh random
# data key, as always); the command's process checks for duplicates, appends
# the containers to its pack and writes the records.
SMALL_FILE = 1024 * 1024  # one segment: the files that go into packs
# A task is a chunk of files (its cost is paid per chunk, not per file), and a
# few are in flight: what waits in memory stays under _CHUNK_BYTES * _AHEAD.
_CHUNK_FILES = 64
_CHUNK_BYTES = 4 * 1024 * 1024
_AHEAD = 16


@dataclass(frozen=True)
class Sealed:
    """A small file as a worker left it: its stat, keyed hash, MIME type, id,
    wrapped data key and whole container."""

    stat: os.stat_result
    size: int
    digest: str
    mime: str
    oid: str
    wrapped_key: bytes
    container: bytes
    header_hash: str


Outcome = Sealed | OSError | None  # None: no longer small, store it the usual way

# The keys a forked worker inherits (never sent through a pipe): master key,
# vault id, plaintext-hash key.
_keys: tuple[bytes, str, bytes] | None = None


def _start_worker(keys: tuple[bytes, str, bytes]) -> None:
    global _keys
    _keys = keys


def _seal_files(paths: list[str]) -> list[Outcome]:
    """In a worker: read, hash and encrypt each file whole."""
    assert _keys is not None
    master, vault_id, hash_key = _keys
    out: list[Outcome] = []
    for path in paths:
        try:
            st, data = _read_small(path)
        except OSError as e:
            out.append(e)
            continue
        if len(data) > SMALL_FILE:
            out.append(None)
            continue
        oid, data_key = secrets.token_hex(16), secrets.token_bytes(32)
        enc = container.Encryptor(data_key)
        out.append(
            Sealed(
                st,
                len(data),
                keyed_hash(hash_key, data),
                sniff(data[:4096]),
                oid,
                wrap_data_key(master, vault_id, oid, data_key),
                enc.header + enc.encrypt_segment(data, final=True),
                container.header_hash(enc.header),
            )
        )
    return out


def _read_small(path: str) -> tuple[os.stat_result, bytes]:
    """A file's stat and its first ``SMALL_FILE + 1`` bytes (all of a small
    file), read through its descriptor in reads sized by its stat: no buffer
    of a mebibyte made and shrunk per file.  A file that grew since its stat
    is read on, to the same limit."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        want = min(st.st_size, SMALL_FILE) + 1
        parts = []
        while want > 0:
            got = os.read(fd, want)
            if not got:
                break
            parts.append(got)
            want -= len(got)
            if want == 0 and sum(map(len, parts)) <= SMALL_FILE:
                want = SMALL_FILE + 1 - sum(map(len, parts))  # it grew: read on, to the limit
        return st, parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


class SmallFileSealer:
    """Seals a list of small files in worker processes, a few chunks ahead of
    the caller, who takes the outcomes back in the same order."""

    def __init__(
        self,
        keys: tuple[bytes, str, bytes],
        files: list[tuple[str, int]],
        workers: int,
        on_chunk: Callable[[list[Outcome]], None],
    ) -> None:
        """``files``: (path, size from the walk's stat) in the order they will be taken."""
        # The workers are forked: this runs before the upload starts any thread of its own.
        self._pool = forked.start(workers, _start_worker, (keys,))
        self._chunks: list[list[str]] = []
        size = _CHUNK_BYTES
        for path, n in files:
            if not self._chunks or size + n > _CHUNK_BYTES or len(self._chunks[-1]) >= _CHUNK_FILES:
                self._chunks.append([])
                size = 0
            self._chunks[-1].append(path)
            size += n
        self._on_chunk = on_chunk  # sees each chunk's outcomes as they come back
        self._submitted: deque[Future[list[Outcome]]] = deque()
        self._ready: deque[tuple[str, Outcome]] = deque()
        self._next = 0
        self._fill()

    def _fill(self) -> None:
        while self._next < len(self._chunks) and len(self._submitted) < _AHEAD:
            self._submitted.append(self._pool.submit(_seal_files, self._chunks[self._next]))
            self._next += 1

    def take(self, path: str) -> Outcome:
        """The outcome for ``path``, the next file in the list."""
        if not self._ready:
            chunk = self._chunks[self._next - len(self._submitted)]
            outcomes = self._submitted.popleft().result()
            self._on_chunk(outcomes)
            self._ready.extend(zip(chunk, outcomes, strict=True))
            self._fill()
        got, outcome = self._ready.popleft()
        assert got == path, (got, path)
        return outcome

    def close(self) -> None:
        """Wait for the workers when every chunk was taken; otherwise end them at once."""
        forked.stop(self._pool, finished=not self._submitted and self._next >= len(self._chunks))
