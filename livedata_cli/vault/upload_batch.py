"""What every file of one upload shares (:class:`Batch`: its options, the
content stored so far, the hash key), and the thread that writes its journals
while the next files are read and encrypted (:class:`JournalWriter`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli.crypto import filepass
from livedata_cli.errors import AuthError
from livedata_cli.index.core import Index, Seen, Version
from livedata_cli.packs import PackWriter, SmallFileSealer
from livedata_cli.vault.reports import Progress

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

__all__ = ["Batch", "JournalWriter"]


@dataclass
class Batch:
    """What every file of one upload command shares."""

    hash_key_of: Callable[[], bytes]  # unlocks the vault: not called when nothing changed
    tags: list[str]
    newest: dict[str, Version]  # the newest live version of each path that may have changed
    progress: Progress
    stdin: BinaryIO | None
    unchanged: dict[str, Seen] = field(default_factory=dict)  # paths the walk's stat found unchanged
    by_hash: dict[str, dict[str, Any]] = field(default_factory=dict)  # this batch's content, not yet indexed
    index_content: bool = False  # keep the text of text-like files for search
    password_key: filepass.PasswordKey | None = None  # --password: every file stored gets it
    no_password: bool = False  # --no-password: new versions of protected paths get none
    derived_from: dict[str, str] = field(default_factory=dict)  # conversions: path -> source version id
    packer: PackWriter | None = None  # small files go into packs (folder stores)
    sealer: SmallFileSealer | None = None  # small files encrypted by worker processes
    sealed: set[str] = field(default_factory=set)  # the paths the sealer has
    known: dict[str, Version] = field(default_factory=dict)  # the index's versions of the sealer's current chunk
    _claims: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hash_key: bytes | AuthError | None = None

    @property
    def hash_key(self) -> bytes:
        """The plaintext-hash key, derived (and the vault unlocked) on first use, so
        a rerun over an unchanged tree needs no passphrase stretch at all.  A
        failed unlock is kept: it is asked for once, not once per file."""
        if self._hash_key is None:
            with self._lock:
                if self._hash_key is None:
                    try:
                        self._hash_key = self.hash_key_of()
                    except AuthError as e:
                        self._hash_key = e
        if isinstance(self._hash_key, AuthError):
            raise self._hash_key
        return self._hash_key

    def claim(self, digest: str) -> threading.Event:
        """First caller for a content hash gets a fresh event to set when its record
        is in ``by_hash``; later callers wait for that, then find the record."""
        with self._lock:
            event = self._claims.get(digest)
            if event is None:
                event = self._claims[digest] = threading.Event()
                return event
        event.wait()
        return threading.Event()

    def first_with(self, digest: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record that stores this content in this batch: ``record``, unless
        another was registered first (the check and the claim are one step)."""
        with self._lock:
            return self.by_hash.setdefault(digest, record)

    def protects(self, newest: Version | Seen) -> bool:
        """Whether a new version of this path would have a file password."""
        return not self.no_password and (self.password_key is not None or newest.protected)

    def indexed(self, records: list[dict[str, Any]]) -> None:
        """These records are in the index now: lookups find them there."""
        with self._lock:
            for rec in records:
                if self.by_hash.get(rec.get("hash", "")) is rec:
                    del self.by_hash[rec["hash"]]
            self._claims = {d: e for d, e in self._claims.items() if not e.is_set()}


class JournalWriter:
    """Writes an upload's journals one at a time on a thread of its own, so the
    next files are read and encrypted while SQLite, zlib and the disk flush
    work (they release the GIL).  It has its own index connection: the
    batch's ``by_hash`` answers for records until their journal is in."""

    def __init__(self, vault: Vault, batch: Batch) -> None:
        self._vault = vault
        self._batch = batch
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="livedata-journal")
        self._index: Index | None = None
        self._inflight: Future[None] | None = None

    def submit(self, records: list[dict[str, Any]]) -> None:
        """Seal the open pack, wait for the journal before, and start this one."""
        if self._batch.packer is not None:
            self._batch.packer.seal()
        self.wait()
        if records:
            self._vault.unlock()  # here, on the command's thread, where a prompt belongs
            self._inflight = self._thread.submit(self._write, records)

    def wait(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._index is None:
            self._index = Index(self._vault.index.path)
        self._vault._write_journal(records, self._index)
        self._batch.indexed(records)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()  # a journal already started is finished, whatever else happened
        finally:
            self._thread.shutdown()
            if self._index is not None:
                self._index.close()
