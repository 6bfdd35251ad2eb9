"""When a killed multipart upload may be resumed under the same data key.

A resumed upload regenerates the container byte for byte (same object id,
data key and salt) and sends only the parts the bucket lacks.  That is safe
only if the file still holds the same plaintext in the parts already sent:
otherwise a changed part would be sent again under the same key and nonces,
and two ciphertexts under one AES-GCM key and nonce leak the XOR of their
plaintexts and the GHASH key.  Size and mtime do not prove it (a tool can
reset the mtime; clocks skew).

So while an upload runs, a keyed hash of each part's plaintext is kept with
the pending upload (:class:`PartMacs`), and a resume first checks every part
the bucket holds against the file as it is now (:func:`parts_unchanged`):
one read of the part of the file already sent.  Any part missing its hash or
differing means the upload is aborted and started over with a new key and salt.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import BinaryIO

from livedata_cli.crypto.container import DEFAULT_LOG2_SEGMENT, TAG_LEN
from livedata_cli.crypto.wrap import subkey

READ_CHUNK = 1024 * 1024


def mac_key(master_key: bytes, vault_id: str) -> bytes:
    """The key of the part hashes: never a plaintext hash the index could leak."""
    return subkey(master_key, vault_id, "resume-part")


def part_plaintext(part_size: int, segment_size: int = 1 << DEFAULT_LOG2_SEGMENT) -> int:
    """Plaintext bytes in one part: parts hold whole sealed segments (the first
    also the container header)."""
    return (part_size // (segment_size + TAG_LEN)) * segment_size


def _new_mac(key: bytes, oid: str, part: int) -> hmac.HMAC:
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(b"livedata/v1/resume-part\x00" + oid.encode() + b"\x00" + part.to_bytes(8, "big"))
    return h


class PartMacs:
    """Hashes the plaintext as it is encrypted, part by part, and hands each
    finished part's hash to ``save`` (before the upload can be resumed from it)."""

    def __init__(self, key: bytes, oid: str, plain_per_part: int, save: Callable[[int, str], None]) -> None:
        self._key = key
        self._oid = oid
        self._per_part = plain_per_part
        self._save = save
        self._part = 1
        self._filled = 0
        self._mac = _new_mac(key, oid, 1)

    def update(self, data: bytes | memoryview) -> None:
        mv = memoryview(data).cast("B")
        while mv:
            take = min(len(mv), self._per_part - self._filled)
            self._mac.update(mv[:take])
            self._filled += take
            mv = mv[take:]
            if self._filled == self._per_part:
                self._save(self._part, self._mac.hexdigest())
                self._part += 1
                self._filled = 0
                self._mac = _new_mac(self._key, self._oid, self._part)


def parts_unchanged(
    key: bytes, oid: str, f: BinaryIO, plain_per_part: int, sent: list[int], saved: dict[int, str]
) -> bool:
    """Whether every part the bucket holds (``sent``) has a saved hash equal to
    the hash of that part of the file now.  Reads only those parts, and leaves
    ``f`` where it was."""
    where = f.tell()
    try:
        return all(_part_unchanged(key, oid, f, plain_per_part, part, saved.get(part)) for part in sorted(sent))
    finally:
        f.seek(where)


def _part_unchanged(key: bytes, oid: str, f: BinaryIO, plain_per_part: int, part: int, expected: str | None) -> bool:
    if expected is None:
        return False
    mac = _new_mac(key, oid, part)
    f.seek((part - 1) * plain_per_part)
    left = plain_per_part
    while left:
        chunk = f.read(min(READ_CHUNK, left))
        if not chunk:
            break
        mac.update(chunk)
        left -= len(chunk)
    return hmac.compare_digest(mac.hexdigest(), expected)
