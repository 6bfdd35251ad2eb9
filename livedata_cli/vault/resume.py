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

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from livedata_cli import settings
from livedata_cli.crypto import container
from livedata_cli.crypto.container import DEFAULT_LOG2_SEGMENT, HEADER_LEN, TAG_LEN
from livedata_cli.crypto.wrap import subkey
from livedata_cli.errors import NotFound, UsageError
from livedata_cli.index.core import PendingUpload
from livedata_cli.localfs import UploadSource
from livedata_cli.stores import ResumableWrites

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

READ_CHUNK = 1024 * 1024
WAIT = 60.0  # seconds a part waits for its hash at most


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
    finished part's hash to ``save``; :meth:`guard` holds a part back from the
    store until its hash is saved, so every part sent can be checked on resume."""

    def __init__(self, key: bytes, oid: str, part_size: int, total: int, save: Callable[[int, str], None]) -> None:
        self._key = key
        self._left = total  # plaintext bytes still to come: the last part may be short
        self._oid = oid
        self._part_size = part_size
        self._per_part = part_plaintext(part_size)
        self._save = save
        self._part = 1
        self._filled = 0
        self._mac = _new_mac(key, oid, 1)
        self._saved = threading.Condition()
        self._last_saved = 0

    def guard(self, out: BinaryIO) -> BinaryIO:
        """``out`` (the store's part writer), sending part n only once its hash is saved."""
        return cast(BinaryIO, _Guarded(out, self))

    def wait_for(self, part: int) -> None:
        """Wait until part ``part``'s hash is saved.  After ``WAIT`` seconds the
        part goes anyway: a part without a hash only makes a resume start over."""
        with self._saved:
            self._saved.wait_for(lambda: self._last_saved >= part, timeout=WAIT)

    def update(self, data: bytes | memoryview) -> None:
        mv = memoryview(data).cast("B")
        while mv:
            take = min(len(mv), self._per_part - self._filled)
            self._mac.update(mv[:take])
            self._filled += take
            self._left -= take
            mv = mv[take:]
            if self._filled == self._per_part or self._left <= 0:
                self._save(self._part, self._mac.hexdigest())
                with self._saved:
                    self._last_saved = self._part
                    self._saved.notify_all()
                self._part += 1
                self._filled = 0
                self._mac = _new_mac(self._key, self._oid, self._part)


class _Guarded:
    """Forwards container bytes; before the first byte past part n's end (the
    write that makes the store writer send part n), waits for n's hash."""

    def __init__(self, out: BinaryIO, macs: PartMacs) -> None:
        self._out = out
        self._macs = macs
        self._written = 0
        self._next = 1
        self._end = HEADER_LEN + macs._part_size  # where part 1 ends; the others are part_size long

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:
        n = memoryview(data).nbytes
        while self._written + n > self._end:
            self._macs.wait_for(self._next)
            self._next += 1
            self._end += self._macs._part_size
        self._written += n
        self._out.write(data)
        return n

    def flush(self) -> None:
        self._out.flush()


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


# -- new data objects, resumable where the store can ----------------------------
def new_object(vault: Vault, src: UploadSource, f: BinaryIO, *, resumable: bool) -> NewObject:
    """Object id, data key and writer for a new data object.

    Where the store can resume multipart uploads (S3), a file's upload is
    recorded when it starts; a rerun after a crash finds the record (same
    source, size and mtime), reuses the object id, data key and salt, so
    the container regenerates byte for byte and the parts already in the
    store are not sent again.  The record goes once the object is whole.
    It is reused only when every part sent holds the same plaintext now
    (keyed hashes kept with the record, ``py``): else a changed part
    would go out again under the same key and nonces.
    """
    store = vault.store
    if not isinstance(store, ResumableWrites) or not resumable or src.local == "-":
        oid = secrets.token_hex(16)
        data_key, wrapped = vault._new_data_key(oid)
        return NewObject(oid, data_key, wrapped, None, vault.store.writer(f"data/{oid}"))
    start = store.resumable_writer
    from livedata_cli.index.core import PendingUploads

    st = os.fstat(f.fileno())
    source = os.path.abspath(src.local)
    pending = PendingUploads(settings.home() / settings.INDEX_FILE)
    found = pending.find(source, src.path)
    macs = mac_key(vault.master_key, vault.vault_id)
    per_part = part_plaintext(found.part_size) if found else 0
    if found is not None and (
        (found.size, found.mtime) != (st.st_size, st.st_mtime)
        or not parts_unchanged(  # same key and nonces only over the same plaintext
            macs, found.object, f, per_part, _parts_sent(store, found), pending.part_macs(found.object)
        )
    ):
        store.abort_upload(f"data/{found.object}", found.upload_id)
        pending.drop(found.object)
        found = None
    if found is not None:
        oid, wrapped, salt = found.object, found.wrapped_key, found.salt
        data_key = vault._data_key(oid, wrapped)
    else:
        oid, salt = secrets.token_hex(16), secrets.token_bytes(container.SALT_LEN)
        data_key, wrapped = vault._new_data_key(oid)

    hashed: list[PartMacs] = []

    def hash_parts(part_size: int) -> None:
        save = functools.partial(pending.save_part, oid)
        hashed.append(PartMacs(macs, oid, part_size, st.st_size, save))

    if found is not None:
        hash_parts(found.part_size)

    def on_start(upload_id: str, part_size: int) -> None:
        hash_parts(part_size)
        pending.save(
            PendingUpload(oid, upload_id, source, src.path, st.st_size, st.st_mtime, wrapped, salt, part_size, time.time())
        )

    @contextlib.contextmanager
    def writer() -> Iterator[BinaryIO]:
        try:
            with start(
                f"data/{oid}",
                size=container.container_size(st.st_size),
                upload_id=found.upload_id if found else None,
                part_size=found.part_size if found else None,
                on_start=on_start,
            ) as out:
                yield hashed[0].guard(out) if hashed else out
            pending.drop(oid)
        finally:
            pending.close()

    return NewObject(oid, data_key, wrapped, salt, writer(), lambda mv: hashed[0].update(mv) if hashed else None)


def _parts_sent(store: ResumableWrites, found: PendingUpload) -> list[int]:
    """The part numbers a pending upload holds in the store; part 0, which
    no hash matches, when the upload is gone (whatever the store kept of it)."""
    try:
        return list(store.list_parts(f"data/{found.object}", found.upload_id))
    except NotFound:
        return [0]


def abort_abandoned_uploads(vault: Vault) -> int:
    """Abort this vault's multipart uploads that no pending record here knows
    and that are older than ``LIVEDATA_S3_ABANDON_AFTER`` seconds (a day)."""
    store = vault.store
    if not isinstance(store, ResumableWrites):
        return 0
    from livedata_cli.index.core import PendingUploads

    try:
        age = float(os.environ.get("LIVEDATA_S3_ABANDON_AFTER", "") or 86400)
    except ValueError:
        raise UsageError("LIVEDATA_S3_ABANDON_AFTER must be a number of seconds") from None
    pending = PendingUploads(settings.home() / settings.INDEX_FILE)
    try:
        known = pending.upload_ids()
    finally:
        pending.close()
    now, aborted = time.time(), 0
    for key, upload_id, started in store.list_uploads("data/"):
        if upload_id not in known and now - started >= age:
            store.abort_upload(key, upload_id)
            aborted += 1
    return aborted


@dataclass
class NewObject:
    """Where a new data object goes: its id, data key (and record form), the
    container salt (None: random) and the store writer."""

    oid: str
    data_key: bytes
    wrapped_key: bytes
    salt: bytes | None
    writer: AbstractContextManager[BinaryIO]
    on_plaintext: Callable[[memoryview], None] | None = None  # a resumable upload's part hashes
