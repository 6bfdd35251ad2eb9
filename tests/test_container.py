"""Container format v1: the normative vectors, then one test per attack of DESIGN §4.

The attack tests build a five-segment container with 1 KiB segments and
tamper with it the way a hostile store could: flip, drop, duplicate, reorder,
truncate, extend, swap headers. Each must end in ``IntegrityError`` and never
in wrong plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from livedata_cli.crypto.container import (
    DEFAULT_LOG2_SEGMENT,
    HEADER_LEN,
    MAGIC,
    MAX_LOG2_SEGMENT,
    MIN_LOG2_SEGMENT,
    SUITE_AES256GCM_HKDF_SHA256,
    TAG_LEN,
    Decryptor,
    Encryptor,
    container_size,
    decrypt_stream,
    derive_keys,
    encrypt_stream,
    header_hash,
    verify_header,
)
from livedata_cli.errors import ExitCode, IntegrityError, UsageError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "container-v1.json").read_text(encoding="utf-8")
)
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
LOG2 = 10
SEG = 1 << LOG2
SEALED = SEG + TAG_LEN
# Four full segments and a short fifth.
PLAINTEXT = bytes((i * 7 + 3) % 251 for i in range(4 * SEG + 300))
N_SEGMENTS = 5


def seal(
    plaintext: bytes = PLAINTEXT, key: bytes = KEY, salt: bytes | None = None, log2: int = LOG2
) -> bytes:
    out = io.BytesIO()
    encrypt_stream(key, io.BytesIO(plaintext), out, salt=salt, log2_segment_size=log2)
    return out.getvalue()


def open_container(container: bytes, key: bytes = KEY, **kw: Any) -> bytes:
    out = io.BytesIO()
    n = decrypt_stream(key, io.BytesIO(container), out, **kw)
    assert n == len(out.getvalue())
    return out.getvalue()


def rejects(container: bytes, key: bytes = KEY, **kw: Any) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        open_container(container, key, **kw)
    message = str(info.value)
    assert key.hex() not in message and KEY.hex() not in message
    assert info.value.exit_code == ExitCode.INTEGRITY
    return info.value


def split(container: bytes, log2: int = LOG2) -> tuple[bytes, list[bytes]]:
    size = (1 << log2) + TAG_LEN
    body = container[HEADER_LEN:]
    return container[:HEADER_LEN], [body[i : i + size] for i in range(0, len(body), size)]


CONTAINER = seal(salt=bytes(32))
HEADER, SEGMENTS = split(CONTAINER)


def forged_header(log2: int, key: bytes = KEY, salt: bytes = bytes(32)) -> bytes:
    """A header whose MAC and commitment are correct for any log2 byte, as only a key holder could write it."""
    _, commit, header_key = derive_keys(key, salt)
    prefix = MAGIC + bytes((SUITE_AES256GCM_HKDF_SHA256, log2)) + salt + commit
    return prefix + hmac.digest(header_key, prefix, "sha256")


def forged_segment(index: int, plaintext: bytes, final: bool, header: bytes = HEADER) -> bytes:
    """A segment sealed with the real payload key: what a buggy or hostile writer could emit."""
    payload_key, _, _ = derive_keys(KEY, header[6:38])
    nonce = index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
    return AESGCM(payload_key).encrypt(nonce, plaintext, header[70:])


# --- normative vectors -------------------------------------------------------


def test_vectors_cover_the_format() -> None:
    assert VECTORS["format"] == "livedata container v1"
    assert len(VALID) >= 7 and len(INVALID) >= 15


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_with_encryptor(v: dict[str, Any]) -> None:
    key, salt = bytes.fromhex(v["data_key"]), bytes.fromhex(v["salt"])
    plaintext = bytes.fromhex(v["plaintext"])
    assert derive_keys(key, salt) == (
        bytes.fromhex(v["payload_key"]),
        bytes.fromhex(v["commit"]),
        bytes.fromhex(v["header_key"]),
    )
    enc = Encryptor(key, salt=salt, log2_segment_size=v["log2_segment_size"])
    assert enc.header[70:] == bytes.fromhex(v["header_mac"])
    size = enc.segment_size
    pieces = [plaintext[i : i + size] for i in range(0, len(plaintext), size)] or [b""]
    sealed = [enc.encrypt_segment(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    container = enc.header + b"".join(sealed)
    assert container.hex() == v["container"]
    assert len(container) == container_size(len(plaintext), v["log2_segment_size"])

    dec = Decryptor(key, enc.header)
    opened = [dec.decrypt_segment(s, final=i == len(sealed) - 1) for i, s in enumerate(sealed)]
    assert b"".join(opened) == plaintext and dec.finished


@pytest.mark.parametrize("v", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_with_streams(v: dict[str, Any]) -> None:
    key, salt = bytes.fromhex(v["data_key"]), bytes.fromhex(v["salt"])
    plaintext = bytes.fromhex(v["plaintext"])
    seen = hashlib.sha256()
    progress: list[int] = []
    out = io.BytesIO()
    header, plaintext_len, container_len = encrypt_stream(
        key,
        io.BytesIO(plaintext),
        out,
        salt=salt,
        log2_segment_size=v["log2_segment_size"],
        on_plaintext=seen.update,
        on_progress=progress.append,
    )
    assert out.getvalue().hex() == v["container"]
    assert header == out.getvalue()[:HEADER_LEN]
    assert (plaintext_len, container_len) == (len(plaintext), len(out.getvalue()))
    assert seen.hexdigest() == v["plaintext_sha256"] and sum(progress) == len(plaintext)

    opened = hashlib.sha256()
    assert (
        open_container(
            out.getvalue(),
            key,
            expected_header_hash=header_hash(header),
            on_plaintext=opened.update,
        )
        == plaintext
    )
    assert opened.hexdigest() == v["plaintext_sha256"]


@pytest.mark.parametrize("v", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector_rejected(v: dict[str, Any]) -> None:
    rejects(bytes.fromhex(v["container"]), bytes.fromhex(v["data_key"]))


# --- round trips and the stream contract ---------------------------------------


@pytest.mark.parametrize("length", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5])
def test_round_trip_and_exact_size(length: int) -> None:
    plaintext = os.urandom(length)
    container = seal(plaintext)
    assert len(container) == container_size(length, LOG2)
    assert open_container(container) == plaintext


def test_fresh_salt_per_container() -> None:
    assert seal()[:HEADER_LEN] != seal()[:HEADER_LEN]
    assert Encryptor(KEY).segment_size == 1 << DEFAULT_LOG2_SEGMENT


class Trickle(io.RawIOBase):
    """A pipe-like source: short reads, no size, no seek."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        self._n += 1
        step = min(len(buf), 1 + (self._n * 97) % 700, len(self._data))
        buf[:step] = self._data[:step]
        self._data = self._data[step:]
        return step


class ReadOnly:
    """A source with ``read`` only, as some wrappers are."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._src.read(min(n, 300))


@pytest.mark.parametrize("make_src", [Trickle, ReadOnly], ids=["short-reads", "read-only"])
def test_pipe_like_sources(make_src: Callable[[bytes], Any]) -> None:
    assert seal(salt=bytes(32)) == CONTAINER
    out = io.BytesIO()
    encrypt_stream(KEY, make_src(PLAINTEXT), out, salt=bytes(32), log2_segment_size=LOG2)
    assert out.getvalue() == CONTAINER
    back = io.BytesIO()
    assert decrypt_stream(KEY, make_src(CONTAINER), back) == len(PLAINTEXT)
    assert back.getvalue() == PLAINTEXT


def reference_container(plaintext: bytes, salt: bytes, log2: int) -> bytes:
    """The container built segment by segment, to check the stream code against."""
    enc = Encryptor(KEY, salt=salt, log2_segment_size=log2)
    size = enc.segment_size
    pieces = [plaintext[i : i + size] for i in range(0, len(plaintext), size)] or [b""]
    last = len(pieces) - 1
    return enc.header + b"".join(
        enc.encrypt_segment(p, final=i == last) for i, p in enumerate(pieces)
    )


@pytest.mark.parametrize(
    "length", [65535, 65536, 65537, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20]
)
def test_default_segment_size_from_a_pipe(length: int) -> None:
    plaintext = os.urandom(length)
    salt = os.urandom(32)
    out = io.BytesIO()
    encrypt_stream(KEY, cast(BinaryIO, Trickle(plaintext)), out, salt=salt)
    assert out.getvalue() == reference_container(plaintext, salt, DEFAULT_LOG2_SEGMENT)
    back = io.BytesIO()
    decrypt_stream(KEY, cast(BinaryIO, Trickle(out.getvalue())), back)
    assert back.getvalue() == plaintext


def test_callbacks_see_every_segment_in_order() -> None:
    chunks: list[bytes] = []
    progress: list[int] = []
    encrypt_stream(
        KEY,
        io.BytesIO(PLAINTEXT),
        io.BytesIO(),
        log2_segment_size=LOG2,
        on_plaintext=lambda view: chunks.append(bytes(view)),
        on_progress=progress.append,
    )
    assert b"".join(chunks) == PLAINTEXT and len(chunks) == N_SEGMENTS
    assert progress == [SEG] * 4 + [300]


class Boom(Exception):
    pass


def test_callback_error_propagates_and_threads_end() -> None:
    before = threading.active_count()

    def explode(view: memoryview) -> None:
        raise Boom

    with pytest.raises(Boom):
        encrypt_stream(
            KEY, io.BytesIO(PLAINTEXT), io.BytesIO(), log2_segment_size=LOG2, on_plaintext=explode
        )
    with pytest.raises(Boom):
        open_container(CONTAINER, on_plaintext=explode)
    assert threading.active_count() == before


class FailingSink(io.RawIOBase):
    def __init__(self, allow: int) -> None:
        self.allow = allow

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.allow <= 0:
            raise OSError(28, "No space left on device")
        self.allow -= 1
        return len(data)


@pytest.mark.parametrize("allow", [0, 1, 3])
def test_write_errors_propagate(allow: int) -> None:
    before = threading.active_count()
    with pytest.raises(OSError):
        encrypt_stream(
            KEY, io.BytesIO(PLAINTEXT), cast(BinaryIO, FailingSink(allow)), log2_segment_size=LOG2
        )
    with pytest.raises(OSError):
        decrypt_stream(KEY, io.BytesIO(CONTAINER), cast(BinaryIO, FailingSink(allow)))
    assert threading.active_count() == before


class PartialSink(io.RawIOBase):
    """A raw file that accepts at most 100 bytes per write."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data[:100])
        self.data += chunk
        return len(chunk)


def test_partial_writes_are_completed() -> None:
    sink = PartialSink()
    encrypt_stream(
        KEY, io.BytesIO(PLAINTEXT), cast(BinaryIO, sink), salt=bytes(32), log2_segment_size=LOG2
    )
    assert bytes(sink.data) == CONTAINER
    back = PartialSink()
    decrypt_stream(KEY, io.BytesIO(CONTAINER), cast(BinaryIO, back))
    assert bytes(back.data) == PLAINTEXT


# --- writer rules --------------------------------------------------------------


def test_encryptor_refuses_misuse() -> None:
    enc = Encryptor(KEY, log2_segment_size=LOG2)
    with pytest.raises(UsageError):
        enc.encrypt_segment(b"x" * (SEG - 1), final=False)  # short non-final
    with pytest.raises(UsageError):
        enc.encrypt_segment(b"x" * (SEG + 1), final=True)  # too long
    enc.encrypt_segment(b"x" * SEG, final=False)
    with pytest.raises(UsageError):
        enc.encrypt_segment(b"", final=True)  # empty final after data
    enc.encrypt_segment(b"x", final=True)
    assert enc.finished
    with pytest.raises(UsageError):
        enc.encrypt_segment(b"x", final=True)  # nothing after final


@pytest.mark.parametrize("log2", [0, 9, 25, 255, True])
def test_writer_refuses_bad_segment_size(log2: int) -> None:
    with pytest.raises(UsageError):
        Encryptor(KEY, log2_segment_size=log2)
    with pytest.raises(UsageError):
        container_size(10, log2)


@pytest.mark.parametrize("key, salt", [(b"short", None), (KEY, b"short")])
def test_writer_refuses_bad_key_or_salt(key: bytes, salt: bytes | None) -> None:
    with pytest.raises(UsageError):
        Encryptor(key, salt=salt)


# --- attacks: flip ---------------------------------------------------------------


@pytest.mark.parametrize("pos", range(HEADER_LEN))
def test_flip_any_header_byte(pos: int) -> None:
    for mask in (0x01, 0x80):
        tampered = bytearray(CONTAINER)
        tampered[pos] ^= mask
        rejects(bytes(tampered))
        with pytest.raises(IntegrityError):
            verify_header(KEY, bytes(tampered[:HEADER_LEN]))


PAYLOAD_POSITIONS = sorted(
    {
        HEADER_LEN + i * SEALED + off
        for i in range(N_SEGMENTS)
        for off in (0, 1, SEG - 1, SEG, SEG + 15)
    }
    | set(range(HEADER_LEN, len(CONTAINER), 97))
    | {len(CONTAINER) - 1}
)


@pytest.mark.parametrize("pos", [p for p in PAYLOAD_POSITIONS if p < len(CONTAINER)])
def test_flip_payload_byte(pos: int) -> None:
    tampered = bytearray(CONTAINER)
    tampered[pos] ^= 0x01
    rejects(bytes(tampered))


# --- attacks: drop, duplicate, reorder -----------------------------------------------


@pytest.mark.parametrize("i", range(N_SEGMENTS))
def test_drop_segment(i: int) -> None:
    rejects(HEADER + b"".join(s for j, s in enumerate(SEGMENTS) if j != i))


@pytest.mark.parametrize("i", range(N_SEGMENTS))
def test_duplicate_segment(i: int) -> None:
    segments = SEGMENTS[: i + 1] + SEGMENTS[i:]
    rejects(HEADER + b"".join(segments))


@pytest.mark.parametrize("i, j", [(0, 1), (1, 2), (0, 3), (2, 3), (3, 4), (0, 4)])
def test_reorder_segments(i: int, j: int) -> None:
    segments = list(SEGMENTS)
    segments[i], segments[j] = segments[j], segments[i]
    rejects(HEADER + b"".join(segments))


# --- attacks: truncate, extend ---------------------------------------------------------


TRUNCATIONS = sorted(
    {0, 1, 4, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + TAG_LEN - 1}
    | {HEADER_LEN + k * SEALED for k in range(1, N_SEGMENTS)}  # at a boundary: last one not final
    | {
        HEADER_LEN + k * SEALED + off
        for k in range(N_SEGMENTS)
        for off in (7, SEG // 2, SEALED - 1)
    }
    | {len(CONTAINER) - 1}
)


@pytest.mark.parametrize("end", [e for e in TRUNCATIONS if e < len(CONTAINER)])
def test_truncate(end: int) -> None:
    rejects(CONTAINER[:end])


@pytest.mark.parametrize(
    "extra",
    [b"\x00", bytes(TAG_LEN), bytes(SEALED), SEGMENTS[-1], SEGMENTS[0]],
    ids=["byte", "tag-sized", "segment-sized", "final-again", "first-again"],
)
def test_extend(extra: bytes) -> None:
    rejects(CONTAINER + extra)


def test_extend_with_well_formed_empty_final_segment() -> None:
    # Even sealed under the real key, an empty final segment after data
    # breaks the one-encoding rule: the reader refuses it by rule, not by tag.
    exact = PLAINTEXT[: 2 * SEG]
    error = rejects(HEADER + b"".join(SEGMENTS[:2]) + forged_segment(2, b"", final=True))
    assert "empty final" in str(error)
    good = HEADER + SEGMENTS[0] + forged_segment(1, exact[SEG:], final=True)
    assert open_container(good) == exact


def test_segment_longer_than_declared_size() -> None:
    dec = Decryptor(KEY, HEADER)
    with pytest.raises(IntegrityError, match="longer than"):
        dec.decrypt_segment(SEGMENTS[0] + b"\x00", final=True)
    with pytest.raises(IntegrityError, match="already failed"):
        dec.decrypt_segment(SEGMENTS[0], final=False)  # a failed reader stays failed


def test_decryptor_rules() -> None:
    dec = Decryptor(KEY, HEADER)
    with pytest.raises(IntegrityError, match="short but not final"):
        dec.decrypt_segment(SEGMENTS[0][:-1], final=False)
    dec = Decryptor(KEY, HEADER)
    with pytest.raises(IntegrityError, match="shorter than its"):
        dec.decrypt_segment(b"\x00" * (TAG_LEN - 1), final=True)
    dec = Decryptor(KEY, HEADER)
    opened = [dec.decrypt_segment(s, final=i == N_SEGMENTS - 1) for i, s in enumerate(SEGMENTS)]
    assert b"".join(opened) == PLAINTEXT and dec.finished
    with pytest.raises(IntegrityError, match="follows the final"):
        dec.decrypt_segment(SEGMENTS[0], final=False)


# --- attacks: header swaps, key commitment, wrong key --------------------------------


def test_header_swap_same_key() -> None:
    other = seal(os.urandom(len(PLAINTEXT)))
    other_header, other_segments = split(other)
    rejects(other_header + b"".join(SEGMENTS))
    rejects(HEADER + b"".join(other_segments))
    # The record binding names the mismatch before any segment is read.
    error = rejects(CONTAINER, expected_header_hash=header_hash(other_header))
    assert "metadata record" in str(error)


def test_header_swap_different_key() -> None:
    other_header, _ = split(seal(key=OTHER_KEY))
    rejects(other_header + b"".join(SEGMENTS))  # header MAC fails under KEY
    rejects(other_header + b"".join(SEGMENTS), key=OTHER_KEY)  # segments fail under OTHER_KEY


def test_wrong_key() -> None:
    error = rejects(CONTAINER, key=OTHER_KEY)
    assert "header" in str(error)
    with pytest.raises(IntegrityError):
        verify_header(OTHER_KEY, HEADER)


def test_commitment_checked_even_with_a_good_mac() -> None:
    # A header whose MAC is right but whose commit field is not: reachable
    # only by a key holder, yet the reader must still refuse it.
    _, _, header_key = derive_keys(KEY, bytes(32))
    prefix = bytearray(HEADER[:70])
    prefix[40] ^= 1
    header = bytes(prefix) + hmac.digest(header_key, bytes(prefix), "sha256")
    with pytest.raises(IntegrityError, match="commitment"):
        Decryptor(KEY, header)


def test_expected_header_hash() -> None:
    assert header_hash(HEADER) == hashlib.sha256(HEADER).hexdigest()
    verify_header(KEY, HEADER, header_hash(HEADER))
    verify_header(KEY, HEADER, header_hash(HEADER).upper())
    for wrong in ("", "00" * 32, "é" * 64):
        with pytest.raises(IntegrityError, match="metadata record"):
            verify_header(KEY, HEADER, wrong)


# --- hostile segment sizes -----------------------------------------------------------


@pytest.mark.parametrize("log2", [0, 9, 25, 255])
def test_hostile_segment_size_rejected_before_allocation(log2: int) -> None:
    header = forged_header(log2)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="segment size"):
            decrypt_stream(KEY, io.BytesIO(header + bytes(64)), io.BytesIO())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    with pytest.raises(IntegrityError, match="segment size"):
        verify_header(KEY, header)


@pytest.mark.parametrize("log2", [MIN_LOG2_SEGMENT, MAX_LOG2_SEGMENT])
def test_segment_size_limits_accepted(log2: int) -> None:
    """The smallest and the largest segment size are written and read back
    (a full segment and a short final one), not only parsed from a header."""
    assert Decryptor(KEY, forged_header(log2)).segment_size == 1 << log2
    plaintext = os.urandom((1 << log2) + 1)
    container = seal(plaintext, log2=log2)
    assert len(container) == container_size(len(plaintext), log2)
    verify_header(KEY, container[:HEADER_LEN])
    assert open_container(container, expected_header_hash=header_hash(container[:HEADER_LEN])) == plaintext


@pytest.mark.parametrize("pos", range(4))
def test_bad_magic(pos: int) -> None:
    header = bytearray(HEADER)
    header[pos] ^= 0x20
    with pytest.raises(IntegrityError, match="magic"):
        Decryptor(KEY, bytes(header))


@pytest.mark.parametrize("length", [0, 1, HEADER_LEN - 1, HEADER_LEN + 1])
def test_header_of_wrong_length(length: int) -> None:
    with pytest.raises(IntegrityError, match="header"):
        verify_header(KEY, (HEADER * 2)[:length])


@pytest.mark.parametrize("pos, value", [(4, 0), (4, 2), (4, 255)])
def test_unknown_suite(pos: int, value: int) -> None:
    header = bytearray(HEADER)
    header[pos] = value
    with pytest.raises(IntegrityError, match="suite"):
        Decryptor(KEY, bytes(header))


# --- nothing unauthenticated reaches the output ---------------------------------------


@pytest.mark.parametrize("bad", range(N_SEGMENTS))
def test_output_stops_at_last_authenticated_segment(bad: int) -> None:
    tampered = bytearray(CONTAINER)
    tampered[HEADER_LEN + bad * SEALED + 3] ^= 0x01
    out = io.BytesIO()
    seen: list[bytes] = []
    with pytest.raises(IntegrityError):
        decrypt_stream(
            KEY, io.BytesIO(bytes(tampered)), out, on_plaintext=lambda v: seen.append(bytes(v))
        )
    assert out.getvalue() == PLAINTEXT[: bad * SEG]
    assert b"".join(seen) == PLAINTEXT[: bad * SEG]


def test_truncated_container_releases_no_unauthenticated_tail() -> None:
    # Cut at a boundary: segment 3 was sealed as non-final, so the reader,
    # which must treat it as final, rejects it and never writes it.
    out = io.BytesIO()
    with pytest.raises(IntegrityError):
        decrypt_stream(KEY, io.BytesIO(CONTAINER[: HEADER_LEN + 4 * SEALED]), out)
    assert out.getvalue() == PLAINTEXT[: 3 * SEG]
