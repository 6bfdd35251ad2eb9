"""The server's own encryption layer over the object store.

Each blob is one container (``livedata_cli.crypto.container``, the same
format the client uses) under a fresh data key, wrapped by the current
server key version.  Uploads are encrypted segment by segment as the body
arrives and downloads are decrypted segment by segment as the client reads,
so memory per transfer stays at a couple of segments whatever the size.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from anyio import to_thread

from livedata_cli.crypto.container import HEADER_LEN, KEY_LEN, TAG_LEN, Decryptor, Encryptor
from livedata_cli.errors import IntegrityError
from livedata_cli.server.db import AnyRow
from livedata_cli.server.keys import ServerKeys
from livedata_cli.server.scan import Scan
from livedata_cli.stores import ObjectStore

# 256 KiB segments: Range reads and memory per connection stay small, tag overhead 0.006 %.
LOG2_SEGMENT = 18


class TooLarge(Exception):
    """The body went past what the caller may store."""


class LengthMismatch(Exception):
    """The body ended at another length than it declared."""


@dataclass(frozen=True)
class StoredBlob:
    blob_id: str
    key_version: int
    wrapped_key: bytes
    size: int


def blob_key(blob_id: str) -> str:
    return f"data/{blob_id}"


async def store_stream(
    store: ObjectStore,
    keys: ServerKeys,
    body: AsyncIterator[bytes],
    *,
    limit: int,
    declared: int | None,
    scan: Scan | None = None,
) -> StoredBlob:
    """Encrypt ``body`` into a new blob; nothing is left behind when anything fails.

    With ``scan``, each chunk also goes to the scanner as it arrives, and its
    verdict is awaited before the blob is committed to the store.
    """
    blob_id = secrets.token_hex(16)
    data_key = secrets.token_bytes(KEY_LEN)
    enc = Encryptor(data_key, log2_segment_size=LOG2_SEGMENT)
    seg = enc.segment_size
    writer = store.writer(blob_key(blob_id))
    f: BinaryIO = await to_thread.run_sync(writer.__enter__)
    received = 0
    buf = bytearray()

    def seal_write(chunk: bytes, final: bool) -> None:
        f.write(enc.encrypt_segment(chunk, final=final))

    try:
        await to_thread.run_sync(f.write, enc.header)
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise TooLarge()
            if declared is not None and received > declared:
                raise LengthMismatch()
            if scan is not None:
                await scan.feed(chunk)
            buf += chunk
            while len(buf) > seg:  # keep at least one byte: the final segment is never empty after data
                piece = bytes(buf[:seg])
                del buf[:seg]
                await to_thread.run_sync(seal_write, piece, False)
        if declared is not None and received != declared:
            raise LengthMismatch()
        await to_thread.run_sync(seal_write, bytes(buf), True)
        if scan is not None:
            await scan.finish()
    except BaseException as e:
        await to_thread.run_sync(writer.__exit__, type(e), e, e.__traceback__)
        raise
    await to_thread.run_sync(writer.__exit__, None, None, None)
    version, wrapped = keys.wrap(blob_id, data_key)
    return StoredBlob(blob_id, version, wrapped, received)


def _read_full(f: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def read_range(
    store: ObjectStore, keys: ServerKeys, row: AnyRow, start: int, end: int
) -> Iterator[bytes]:
    """Plaintext bytes ``start..end`` (inclusive) of a blob, each segment authenticated before release.

    Reading starts at the segment that holds ``start`` (its nonce is its
    index) and stops after the one that holds ``end``; whether a segment is
    the final one follows from the file's size, so a blob cut short or
    extended fails to authenticate.
    """
    data_key = keys.unwrap(row.blob_key.removeprefix("data/"), row.key_version, row.wrapped_key)
    size = int(row.size)
    with store.open(row.blob_key) as f:
        header = _read_full(f, HEADER_LEN)
        dec = Decryptor(data_key, header)
        seg = dec.segment_size
        sealed = seg + TAG_LEN
        last = max(0, -(-size // seg) - 1)
        i = min(start // seg, last)
        if i:
            f.seek(HEADER_LEN + i * sealed)
        offset = i * seg
        while True:
            final = i == last
            want = (size - offset if final else seg) + TAG_LEN
            cur = _read_full(f, want)
            if final and f.read(1):
                raise IntegrityError(f"blob {row.blob_key} is longer than its file")
            plain = dec.decrypt_segment_at(i, cur, final=final)
            seg_end = offset + len(plain)
            if seg_end > start:
                lo = max(0, start - offset)
                hi = min(len(plain), end + 1 - offset)
                if hi > lo:
                    yield plain[lo:hi]
            offset = seg_end
            if offset > end or final:
                return
            i += 1
