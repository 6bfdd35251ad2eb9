"""Container format v1: one file version as a streaming, key-committing AEAD.

``docs/container-format.md`` is the written spec (DESIGN §4); this module is
its implementation and ``tests/container-v1.json`` pins both. In short::

    header  = "LDV\\x01" | suite (1) | log2 segment size (1) | salt (32)
              | commit (32) | HMAC-SHA256(header_key, the 70 bytes before) (32)
    segment = AES-256-GCM(payload_key,
                          nonce = index (11 bytes, big-endian) | final flag (1),
                          aad = header MAC)                -> ciphertext || tag

The module does no I/O of its own: the stream functions read and write the
file objects a caller hands them, so the same code serves local files, pipes
and store uploads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import BinaryIO, Final, NoReturn, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from livedata_cli.errors import IntegrityError, UsageError

__all__ = [
    "DEFAULT_LOG2_SEGMENT",
    "HEADER_LEN",
    "KEY_LEN",
    "MAGIC",
    "MAX_LOG2_SEGMENT",
    "MIN_LOG2_SEGMENT",
    "SALT_LEN",
    "SUITE_AES256GCM_HKDF_SHA256",
    "TAG_LEN",
    "Decryptor",
    "Encryptor",
    "container_size",
    "decrypt_stream",
    "derive_keys",
    "encrypt_stream",
    "header_hash",
    "verify_header",
]

MAGIC: Final = b"LDV\x01"
SUITE_AES256GCM_HKDF_SHA256: Final = 1
HEADER_LEN: Final = 102
TAG_LEN: Final = 16
DEFAULT_LOG2_SEGMENT: Final = 20
MIN_LOG2_SEGMENT: Final = 10
MAX_LOG2_SEGMENT: Final = 24
KEY_LEN: Final = 32
SALT_LEN: Final = 32

_INFO_PAYLOAD: Final = b"livedata/v1/payload"
_INFO_COMMIT: Final = b"livedata/v1/commit"
_INFO_HEADER: Final = b"livedata/v1/header"
# magic (4) + suite (1) + log2 (1) + salt (32) + commit (32): what the header MAC covers.
_MAC_INPUT_LEN: Final = 70
_COUNTER_LEN: Final = 11
_MAX_SEGMENTS: Final = 1 << (8 * _COUNTER_LEN)
_NOT_FINAL: Final = b"\x00"
_FINAL: Final = b"\x01"
# Buffers in flight to the background threads: enough to keep two cores
# busy (2 to 8 measured the same on a 1 GiB file), few enough that memory
# stays at a handful of segments.
_PIPELINE_DEPTH: Final = 3

_ReadInto = Callable[[memoryview], int | None]


def _hkdf(data_key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(data_key)


def derive_keys(data_key: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    """Return ``(payload_key, commit, header_key)`` for one container.

    Three HKDF-SHA256 outputs under distinct labels are independent, so the
    commit can sit in the plaintext header without telling anything about
    the two keys, while still binding the header to exactly one data key.
    """
    if len(data_key) != KEY_LEN:
        raise UsageError(f"a container data key must be {KEY_LEN} bytes")
    if len(salt) != SALT_LEN:
        raise UsageError(f"a container salt must be {SALT_LEN} bytes")
    return (
        _hkdf(data_key, salt, _INFO_PAYLOAD),
        _hkdf(data_key, salt, _INFO_COMMIT),
        _hkdf(data_key, salt, _INFO_HEADER),
    )


def _log2_allowed(log2_segment_size: object) -> bool:
    return (
        isinstance(log2_segment_size, int)
        and not isinstance(log2_segment_size, bool)
        and MIN_LOG2_SEGMENT <= log2_segment_size <= MAX_LOG2_SEGMENT
    )


def _require_log2(log2_segment_size: int) -> None:
    if not _log2_allowed(log2_segment_size):
        raise UsageError(
            f"log2 of the segment size must be {MIN_LOG2_SEGMENT}..{MAX_LOG2_SEGMENT}, "
            f"got {log2_segment_size!r}"
        )


def container_size(plaintext_len: int, log2_segment_size: int = DEFAULT_LOG2_SEGMENT) -> int:
    """Exact container length for a plaintext length, so stores can check sizes up front.

    An empty plaintext still has one (empty) segment; an exact multiple of the
    segment size has no trailing empty segment.
    """
    _require_log2(log2_segment_size)
    if plaintext_len < 0:
        raise UsageError("a plaintext length cannot be negative")
    segment_size = 1 << log2_segment_size
    segments = max(1, -(-plaintext_len // segment_size))
    return HEADER_LEN + plaintext_len + segments * TAG_LEN


def header_hash(header: bytes | memoryview) -> str:
    """Hex SHA-256 of a container header.

    A metadata record stores it so that a record opens only its own
    container: a store that swaps two objects of the same data key is caught
    before any segment is read.
    """
    return hashlib.sha256(header).hexdigest()


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(_COUNTER_LEN, "big") + (_FINAL if final else _NOT_FINAL)


class Encryptor:
    """Encrypts one plaintext segment by segment, enforcing the segment rules.

    The rules (full non-final segments, at most one final, an empty final only
    as the sole segment) are what make each plaintext's encoding unique, so a
    writer that broke them would produce containers readers must reject.
    """

    header: bytes
    segment_size: int
    log2_segment_size: int

    def __init__(
        self,
        data_key: bytes,
        *,
        salt: bytes | None = None,
        log2_segment_size: int = DEFAULT_LOG2_SEGMENT,
    ) -> None:
        _require_log2(log2_segment_size)
        if salt is None:
            salt = os.urandom(SALT_LEN)
        payload_key, commit, header_key = derive_keys(data_key, salt)
        prefix = (
            MAGIC + bytes((SUITE_AES256GCM_HKDF_SHA256, log2_segment_size)) + bytes(salt) + commit
        )
        header_mac = hmac.digest(header_key, prefix, "sha256")
        self.header = prefix + header_mac
        self.log2_segment_size = log2_segment_size
        self.segment_size = 1 << log2_segment_size
        self._aead = AESGCM(payload_key)
        self._aad = header_mac
        self._index = 0
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once the final segment is out; the container is then complete."""
        return self._finished

    def _next_nonce(self, length: int, final: bool) -> bytes:
        if self._finished:
            raise UsageError("the final segment is already encrypted: nothing may follow it")
        if final:
            if length > self.segment_size:
                raise UsageError(
                    f"a final segment holds at most {self.segment_size} bytes, got {length}"
                )
            if length == 0 and self._index:
                raise UsageError(
                    "an empty final segment is allowed only as the only segment; "
                    "mark the last full segment final instead"
                )
        elif length != self.segment_size:
            raise UsageError(
                f"a non-final segment must be exactly {self.segment_size} bytes, got {length}"
            )
        if self._index >= _MAX_SEGMENTS:
            raise UsageError("too many segments for one container")
        return _nonce(self._index, final)

    def _advance(self, final: bool) -> None:
        self._index += 1
        self._finished = final

    def encrypt_segment(self, plaintext: bytes | memoryview, *, final: bool) -> bytes:
        """Encrypt the next segment; returns ciphertext || tag.

        Misuse (wrong length, anything after the final segment) is a
        :class:`UsageError`, raised before any state changes.
        """
        nonce = self._next_nonce(memoryview(plaintext).nbytes, final)
        sealed = self._aead.encrypt(nonce, plaintext, self._aad)
        self._advance(final)
        return sealed

    def _encrypt_into(self, plaintext: memoryview, out: memoryview, *, final: bool) -> int:
        """Like :meth:`encrypt_segment`, writing into ``out`` to spare an allocation per segment."""
        length = plaintext.nbytes
        nonce = self._next_nonce(length, final)
        written = self._aead.encrypt_into(nonce, plaintext, self._aad, out[: length + TAG_LEN])
        self._advance(final)
        return written


def _parse_header(header: bytes) -> int:
    """Check the fields that need no key; return log2 of the segment size.

    The segment size is range-checked here, before anyone sizes a buffer
    from it, so a hostile header cannot make a reader allocate gigabytes.
    """
    if len(header) != HEADER_LEN:
        raise IntegrityError(
            f"container header is {len(header)} bytes, not {HEADER_LEN}: truncated or not a container"
        )
    if header[:4] != MAGIC:
        raise IntegrityError("not a livedata v1 container (bad magic)")
    if header[4] != SUITE_AES256GCM_HKDF_SHA256:
        raise IntegrityError(f"container uses unknown cipher suite {header[4]}")
    log2_segment_size = header[5]
    if not _log2_allowed(log2_segment_size):
        raise IntegrityError(
            f"container declares segment size 2^{log2_segment_size}, "
            f"outside 2^{MIN_LOG2_SEGMENT}..2^{MAX_LOG2_SEGMENT}"
        )
    return log2_segment_size


class Decryptor:
    """Checks a header and then authenticates and decrypts segments in order.

    Construction fails unless the header is intact and made with this data
    key, so no segment is ever tried against a forged or foreign header. After
    any failure the object refuses further segments: a caller cannot probe
    its way past a rejected one.
    """

    segment_size: int
    log2_segment_size: int
    header: bytes

    def __init__(self, data_key: bytes, header: bytes | memoryview) -> None:
        header = bytes(header)
        log2_segment_size = _parse_header(header)
        salt = header[6:38]
        commit = header[38:70]
        header_mac = header[_MAC_INPUT_LEN:HEADER_LEN]
        payload_key, expected_commit, header_key = derive_keys(data_key, salt)
        expected_mac = hmac.digest(header_key, header[:_MAC_INPUT_LEN], "sha256")
        if not hmac.compare_digest(expected_mac, header_mac):
            raise IntegrityError(
                "container header does not authenticate: it was altered, or it belongs to another key"
            )
        # Implied by the MAC under today's HKDF, checked anyway: the commitment
        # is the format's promise that a header opens under one data key only.
        if not hmac.compare_digest(expected_commit, commit):
            raise IntegrityError("container key commitment does not match the data key")
        self.header = header
        self.log2_segment_size = log2_segment_size
        self.segment_size = 1 << log2_segment_size
        self._aead = AESGCM(payload_key)
        self._aad = header_mac
        self._index = 0
        self._finished = False
        self._failed = False

    @property
    def finished(self) -> bool:
        """True once the final segment authenticated; only then is the plaintext complete."""
        return self._finished

    def _fail(self, message: str) -> NoReturn:
        self._failed = True
        raise IntegrityError(message)

    def _next_nonce(self, length: int, final: bool) -> bytes:
        index = self._index
        if self._failed:
            raise IntegrityError("container already failed authentication")
        if self._finished:
            self._fail("data follows the final segment: the container was extended")
        if length < TAG_LEN:
            self._fail(f"segment {index} is truncated: shorter than its {TAG_LEN}-byte tag")
        if length > self.segment_size + TAG_LEN:
            self._fail(f"segment {index} is longer than the container's segment size")
        if not final and length != self.segment_size + TAG_LEN:
            self._fail(f"segment {index} is short but not final: the container is truncated")
        if final and length == TAG_LEN and index:
            self._fail(f"empty final segment {index} after data: the container was altered")
        if index >= _MAX_SEGMENTS:
            self._fail("too many segments for one container")
        return _nonce(index, final)

    def _auth_failed(self, final: bool) -> NoReturn:
        where = "final segment" if final else "segment"
        self._fail(
            f"{where} {self._index} does not authenticate: the container was altered, "
            "truncated, reordered or extended"
        )

    def decrypt_segment(self, segment: bytes | memoryview, *, final: bool) -> bytes:
        """Authenticate and decrypt the next segment (ciphertext || tag).

        ``final`` must say whether this segment ends the container; a stream
        reader knows it because nothing follows. Any mismatch is an
        :class:`IntegrityError`, and no plaintext of a failing segment escapes.
        """
        nonce = self._next_nonce(memoryview(segment).nbytes, final)
        try:
            plaintext = self._aead.decrypt(nonce, segment, self._aad)
        except InvalidTag:
            self._auth_failed(final)
        self._index += 1
        self._finished = final
        return plaintext

    def decrypt_segment_at(self, index: int, segment: bytes | memoryview, *, final: bool) -> bytes:
        """Authenticate and decrypt segment ``index`` out of order (a mounted file
        read at an offset).  The nonce binds the segment to its index and to
        whether it is the last, so a moved, swapped or cut segment fails; the
        caller knows which index is final from the container's length in its
        authenticated record.  The in-order state of the stream is untouched."""
        length = memoryview(segment).nbytes
        if not 0 <= index < _MAX_SEGMENTS:
            raise IntegrityError(f"segment {index} is out of range")
        if length < TAG_LEN or length > self.segment_size + TAG_LEN:
            raise IntegrityError(f"segment {index} has an impossible length: the container is truncated or altered")
        if not final and length != self.segment_size + TAG_LEN:
            raise IntegrityError(f"segment {index} is short but not final: the container is truncated")
        if final and length == TAG_LEN and index:
            raise IntegrityError(f"empty final segment {index} after data: the container was altered")
        try:
            return self._aead.decrypt(_nonce(index, final), segment, self._aad)
        except InvalidTag:
            raise IntegrityError(f"segment {index} does not authenticate: the container was altered") from None

    def _decrypt_into(self, segment: memoryview, out: memoryview, *, final: bool) -> int:
        """Like :meth:`decrypt_segment`, into ``out``; on failure ``out`` holds garbage the caller drops."""
        length = segment.nbytes
        nonce = self._next_nonce(length, final)
        try:
            written = self._aead.decrypt_into(nonce, segment, self._aad, out[: length - TAG_LEN])
        except InvalidTag:
            self._auth_failed(final)
        self._index += 1
        self._finished = final
        return written


def _check_header_hash(header: bytes, expected_header_hash: str) -> None:
    actual = header_hash(header).encode("ascii")
    expected = expected_header_hash.lower().encode("utf-8", "replace")
    if not hmac.compare_digest(actual, expected):
        raise IntegrityError("container does not match its metadata record")


def verify_header(
    data_key: bytes, header: bytes | memoryview, expected_header_hash: str | None = None
) -> None:
    """Check a header alone: record binding, format, MAC and key commitment.

    Cheap enough for ``livedata verify`` to run over every object without
    downloading payloads.
    """
    header = bytes(header)
    if expected_header_hash is not None:
        _check_header_hash(header, expected_header_hash)
    Decryptor(data_key, header)


def _readinto_of(src: BinaryIO) -> _ReadInto:
    readinto = getattr(src, "readinto", None)
    if callable(readinto):
        return cast(_ReadInto, readinto)

    def fallback(buf: memoryview) -> int:
        data = src.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    return fallback


def _read_full(readinto: _ReadInto, buf: memoryview) -> int:
    """Fill ``buf`` unless EOF comes first; pipes and sockets return short reads."""
    size = len(buf)
    got = 0
    while got < size:
        n = readinto(buf[got:] if got else buf)
        if n is None:
            raise UsageError("cannot stream from a non-blocking file")
        if n == 0:
            break
        got += n
    return got


# Most files in a vault are small: a first read into a buffer this size
# spares them zeroing a whole segment buffer they would not fill.
_FIRST_READ: Final = 64 * 1024


def _read_first(readinto: _ReadInto, size: int) -> tuple[memoryview, int]:
    """Read the first chunk of up to ``size`` bytes, sizing the buffer only as the input requires."""
    if size <= _FIRST_READ:
        buf = memoryview(bytearray(size))
        return buf, _read_full(readinto, buf)
    probe = memoryview(bytearray(_FIRST_READ))
    got = _read_full(readinto, probe)
    if got < _FIRST_READ:
        return probe, got
    buf = memoryview(bytearray(size))
    buf[:got] = probe
    return buf, got + _read_full(readinto, buf[got:])


def _write_all(dst: BinaryIO, data: memoryview) -> None:
    """Write all of ``data``; raw files may accept only part of a write."""
    while data:
        n = dst.write(data)
        if n is None:
            raise UsageError("cannot stream to a non-blocking file")
        if n >= len(data):
            return
        data = data[n:]


_Pool = queue.SimpleQueue  # of memoryview, or None once the pipeline failed


class _Pipeline:
    """Background threads of one stream call, and the buffers they hand around.

    The caller's thread reads and runs AES-GCM; a writer thread writes, and a
    second thread runs ``on_plaintext`` (the caller's hash) when there is one.
    File I/O, hashlib and AES-GCM in ``cryptography`` all release the GIL, so
    on two cores hashing one segment overlaps reading, sealing and writing
    others. Fixed pools of buffers bound memory and give back-pressure. Jobs
    run in submission order, and a worker that fails wakes the caller through
    the pools, so an error surfaces on the caller's thread, unchanged.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._pools: list[_Pool[memoryview | None]] = []
        self._workers: list[_Worker] = []

    def pool(self, count: int, size: int) -> _Pool[memoryview | None]:
        pool: _Pool[memoryview | None] = queue.SimpleQueue()
        for _ in range(count):
            pool.put(memoryview(bytearray(size)))
        self._pools.append(pool)
        return pool

    def acquire(self, pool: _Pool[memoryview | None]) -> memoryview:
        buf = pool.get()
        if buf is None:
            pool.put(None)
            assert self.error is not None
            raise self.error
        return buf

    def worker(self, name: str) -> _Worker:
        worker = _Worker(self, name)
        self._workers.append(worker)
        return worker

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        for pool in self._pools:
            pool.put(None)

    def stop(self, cause: BaseException | None = None) -> None:
        """Run what was submitted and end the threads, upstream first.

        On the caller's own error (``cause``) this still writes the segments
        already handed over: all of them authenticated, so ``dst`` ends on a
        clean prefix.  On Ctrl-C it drops them: the command is ending, and
        writing them to a slow disk could outlast its grace period.
        """
        if isinstance(cause, KeyboardInterrupt):
            self.fail(cause)
        for worker in self._workers:
            worker.stop()

    def close(self) -> None:
        self.stop()
        if self.error is not None:
            raise self.error


class _Worker:
    """One background thread running jobs in order."""

    def __init__(self, pipeline: _Pipeline, name: str) -> None:
        self._pipeline = pipeline
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._pipeline.error is not None:
                continue  # drain, so stop() never waits on a dead pipeline
            try:
                job()
            except BaseException as exc:  # re-raised on the caller's thread
                self._pipeline.fail(exc)


def _write_job(dst: BinaryIO, buf: memoryview, length: int, pool: _Pool[memoryview | None]) -> None:
    _write_all(dst, buf[:length])
    pool.put(buf)


def _callback_job(
    callback: Callable[[memoryview], None],
    buf: memoryview,
    length: int,
    then: Callable[[], None],
) -> None:
    callback(buf[:length])
    then()


def encrypt_stream(
    data_key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    salt: bytes | None = None,
    log2_segment_size: int = DEFAULT_LOG2_SEGMENT,
    on_plaintext: Callable[[memoryview], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[bytes, int, int]:
    """Encrypt ``src`` until EOF into ``dst``; return ``(header, plaintext_len, container_len)``.

    The length of ``src`` is never asked for (it may be a pipe): one segment of
    read-ahead tells which segment is final. ``on_plaintext`` sees each
    plaintext segment once, in order, possibly on another thread, and must not
    keep the view (its buffer is reused); the caller hashes the plaintext
    there. ``on_progress`` gets the plaintext byte count of each segment as
    it is sealed. ``dst.write`` must be done with its argument when it
    returns, as every ``io`` object is. Memory stays at a few segments
    whatever the input size.
    """
    enc = Encryptor(data_key, salt=salt, log2_segment_size=log2_segment_size)
    segment_size = enc.segment_size
    readinto = _readinto_of(src)
    _write_all(dst, memoryview(enc.header))
    plaintext_len = 0
    container_len = HEADER_LEN
    cur, cur_len = _read_first(readinto, segment_size)
    nxt: memoryview | None = None
    # No threads and no pools until a second segment exists: most files in a
    # vault are small, and starting threads costs more than their crypto.
    pipe: _Pipeline | None = None
    plain_pool: _Pool[memoryview | None] | None = None
    sealed_pool: _Pool[memoryview | None] | None = None
    writer: _Worker | None = None
    hasher: _Worker | None = None
    try:
        while True:
            if cur_len < segment_size:
                final, nxt_len = True, 0
            else:
                if nxt is None:
                    if pipe is not None and plain_pool is not None:
                        nxt = pipe.acquire(plain_pool)
                    else:
                        nxt = memoryview(bytearray(segment_size))
                nxt_len = _read_full(readinto, nxt)
                final = nxt_len == 0
            plaintext = cur[:cur_len]
            if pipe is None and not final:
                pipe = _Pipeline()
                # The caller holds two plaintext buffers (this one and the one
                # read ahead); the hasher may hold two more.
                plain_pool = pipe.pool(2 if on_plaintext is not None else 0, segment_size)
                sealed_pool = pipe.pool(_PIPELINE_DEPTH, segment_size + TAG_LEN)
                if on_plaintext is not None:
                    hasher = pipe.worker("livedata-hash")
                writer = pipe.worker("livedata-write")
            if pipe is None:
                if on_plaintext is not None:
                    on_plaintext(plaintext)
                sealed = enc.encrypt_segment(plaintext, final=final)
                _write_all(dst, memoryview(sealed))
                sealed_len = len(sealed)
            else:
                assert plain_pool is not None and sealed_pool is not None and writer is not None
                release: Callable[[], None] = partial(plain_pool.put, cur)
                if hasher is not None and on_plaintext is not None:
                    # Hashing reads the buffer while this thread seals it; the
                    # hasher hands the buffer back when it is done.
                    hasher.submit(partial(_callback_job, on_plaintext, cur, cur_len, release))
                out = pipe.acquire(sealed_pool)
                sealed_len = enc._encrypt_into(plaintext, out, final=final)
                writer.submit(partial(_write_job, dst, out, sealed_len, sealed_pool))
                if hasher is None:
                    release()
            plaintext_len += cur_len
            container_len += sealed_len
            if on_progress is not None:
                on_progress(cur_len)
            if final:
                break
            assert nxt is not None
            cur, cur_len, nxt = nxt, nxt_len, None
    except BaseException as exc:
        if pipe is not None:
            pipe.stop(exc)
        raise
    if pipe is not None:
        pipe.close()
    return enc.header, plaintext_len, container_len


def decrypt_stream(
    data_key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    expected_header_hash: str | None = None,
    on_plaintext: Callable[[memoryview], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Authenticate and decrypt a whole container from ``src`` into ``dst``; return the plaintext length.

    Only plaintext of authenticated segments reaches ``dst``, in order; on an
    :class:`IntegrityError` ``dst`` holds an authenticated prefix, so callers
    write to a temporary file and rename it only after this returns.
    ``on_plaintext`` sees each authenticated plaintext segment in order
    (possibly on another thread; do not keep the view), to check a record's
    plaintext hash; ``on_progress`` gets each segment's plaintext byte count.
    """
    readinto = _readinto_of(src)
    header_buf = memoryview(bytearray(HEADER_LEN))
    got = _read_full(readinto, header_buf)
    if got < HEADER_LEN:
        raise IntegrityError(
            "container is truncated inside its header" if got else "container is empty"
        )
    header = header_buf.tobytes()
    if expected_header_hash is not None:
        _check_header_hash(header, expected_header_hash)
    dec = Decryptor(data_key, header)
    segment_size = dec.segment_size
    sealed_size = segment_size + TAG_LEN
    plaintext_len = 0
    cur, cur_len = _read_first(readinto, sealed_size)
    if cur_len == 0:
        raise IntegrityError("container has no segments: it was truncated after the header")
    nxt: memoryview | None = None
    pipe: _Pipeline | None = None
    plain_pool: _Pool[memoryview | None] | None = None
    writer: _Worker | None = None
    hasher: _Worker | None = None
    try:
        while True:
            if cur_len < sealed_size:
                final, nxt_len = True, 0
            else:
                if nxt is None:
                    nxt = memoryview(bytearray(sealed_size))
                nxt_len = _read_full(readinto, nxt)
                final = nxt_len == 0
            sealed = cur[:cur_len]
            if pipe is None and not final:
                pipe = _Pipeline()
                plain_pool = pipe.pool(
                    _PIPELINE_DEPTH + (1 if on_plaintext is not None else 0), segment_size
                )
                if on_plaintext is not None:  # upstream of the writer: it is stopped first
                    hasher = pipe.worker("livedata-hash")
                writer = pipe.worker("livedata-write")
            if pipe is None:
                opened = memoryview(dec.decrypt_segment(sealed, final=final))
                if on_plaintext is not None:
                    on_plaintext(opened)
                _write_all(dst, opened)
                opened_len = len(opened)
            else:
                assert plain_pool is not None and writer is not None
                out = pipe.acquire(plain_pool)
                opened_len = dec._decrypt_into(sealed, out, final=final)
                write: Callable[[], None] = partial(_write_job, dst, out, opened_len, plain_pool)
                if hasher is not None and on_plaintext is not None:
                    hasher.submit(
                        partial(
                            _callback_job,
                            on_plaintext,
                            out,
                            opened_len,
                            partial(writer.submit, write),
                        )
                    )
                else:
                    writer.submit(write)
            plaintext_len += opened_len
            if on_progress is not None:
                on_progress(opened_len)
            if final:
                break
            assert nxt is not None
            cur, nxt, cur_len = nxt, cur, nxt_len
    except BaseException as exc:
        if pipe is not None:
            pipe.stop(exc)
        raise
    if pipe is not None:
        pipe.close()
    return plaintext_len


class _ResealSink:
    """A ``dst`` for :func:`decrypt_stream` that encrypts what it is given under
    another data key, one segment at a time.  One segment (and a little) waits
    in memory, so the last one can be marked final when the input ends."""

    def __init__(self, enc: Encryptor, dst: BinaryIO) -> None:
        self._enc = enc
        self._dst = dst
        self._buf = bytearray()
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        self._buf += data
        size = self._enc.segment_size
        while len(self._buf) > size:  # more than a segment: this one is not the last
            self._emit(self._enc.encrypt_segment(memoryview(self._buf)[:size], final=False))
            del self._buf[:size]
        return memoryview(data).nbytes

    def close(self) -> None:
        self._emit(self._enc.encrypt_segment(bytes(self._buf), final=True))
        self._buf.clear()

    def _emit(self, sealed: bytes) -> None:
        self._dst.write(sealed)
        self.written += len(sealed)


def reseal_stream(
    old_key: bytes,
    src: BinaryIO,
    new_key: bytes,
    dst: BinaryIO,
    *,
    expected_header_hash: str | None = None,
    log2_segment_size: int = DEFAULT_LOG2_SEGMENT,
) -> tuple[bytes, int, int]:
    """Re-encrypt one container under a new data key and a fresh salt, in
    bounded memory; return ``(header, plaintext_len, container_len)`` of the new one.

    The old container is authenticated segment by segment as it is read; on an
    :class:`IntegrityError` ``dst`` holds a partial container, which the
    caller must discard (a store writer does when its block raises).
    """
    enc = Encryptor(new_key, log2_segment_size=log2_segment_size)
    dst.write(enc.header)
    sink = _ResealSink(enc, dst)
    n = decrypt_stream(old_key, src, cast(BinaryIO, sink), expected_header_hash=expected_header_hash)
    sink.close()
    return enc.header, n, HEADER_LEN + sink.written
