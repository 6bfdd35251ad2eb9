"""Object stores: where ciphertext lives.  One protocol, several backends.

Keys are ``/``-separated names such as ``config``, ``keys/<slot>``,
``data/<object-id>`` and ``journal/<name>``; every one of them is opaque to
the store operator (DESIGN §3).

What only some stores can do is a capability below, a protocol that callers
test with ``isinstance(store, Capability)``: never by probing for a method or
by reading the store's URL (tests/test_store_capabilities.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from livedata_cli.errors import UsageError

_KEY_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    """Refuse keys that could escape a folder store (``..``, absolute, odd characters)."""
    if not _KEY_RE.match(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"invalid store key {key!r}")
    return key


class ObjectStore(Protocol):
    """What the vault needs from a store.  Writes are atomic: an object is
    either wholly there or absent, whatever happens to the writing process."""

    url: str
    remote: bool  # across a network: transfers run in parallel to hide its latency
    packs: bool  # small files share pack objects (livedata_cli/packs.py)

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A stream that becomes the object only when the ``with`` block ends without error."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def flush(self) -> None:
        """Make every object written so far durable (called before a journal
        that refers to them is written)."""
        ...


# -- what only some stores can do -------------------------------------------------------
@runtime_checkable
class LocalFolder(Protocol):
    """A store in a folder on this machine (its disk may be unmounted, its lock lives in it)."""

    root: Path

    def prepare(self) -> None:
        """Create the folder: only ``init`` (and a server's first start) may."""
        ...

    def check(self) -> None:
        """Fail as unreachable if the folder is gone, rather than re-create it."""
        ...


@runtime_checkable
class RangedReads(Protocol):
    """A store that sends only a byte range of an object (a pack member, a run of them)."""

    def open_range(self, key: str, offset: int, length: int) -> BinaryIO:
        """``key`` positioned at ``offset``, of which only ``length`` bytes are fetched."""
        ...

    def read_range(self, key: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes ``start``..``end`` in one request (fewer at the end) and the object's size."""
        ...


OnStart = Callable[[str, int], None]  # told (upload id, part size) when a resumable write starts


@runtime_checkable
class ResumableWrites(Protocol):
    """A store whose large writes go in parts that outlive a crash (S3 multipart uploads)."""

    def resumable_writer(
        self,
        key: str,
        *,
        size: int | None = None,
        upload_id: str | None = None,
        part_size: int | None = None,
        on_start: OnStart | None = None,
    ) -> AbstractContextManager[BinaryIO]:
        """A writer that leaves its parts behind on failure, to go on from with ``upload_id``."""
        ...

    def list_uploads(self, prefix: str = "data/") -> Iterator[tuple[str, str, float]]:
        """Unfinished uploads: (key, upload id, when it started)."""
        ...

    def abort_upload(self, key: str, upload_id: str) -> None: ...

    def list_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """The parts an upload holds: number → (ETag, size)."""
        ...


@runtime_checkable
class LinkSharing(Protocol):
    """A store that hands a share out as a link to one whole object of its own."""

    def copy_range(self, src: str, offset: int, length: int, dst: str) -> None:
        """A byte range (a packed member) copied server-side into an object of its own."""
        ...


@runtime_checkable
class PresignedLinks(LinkSharing, Protocol):
    """A store that signs links anyone can fetch an object by until they expire (S3)."""

    def presign_get(self, key: str, expires_in: int) -> str: ...


@runtime_checkable
class ShareHosting(LinkSharing, Protocol):
    """A store whose server hosts shares: it keeps their manifests, counts and revokes them."""

    def create_share(
        self, key: str, *, manifest: str, expires_in: int, max_downloads: int | None, verifier: str | None,
        recipient: str | None = None, share_id: str | None = None,
    ) -> str: ...

    def shares(self) -> dict[str, dict[str, Any]]: ...

    def revoke_share(self, share_id: str) -> None: ...


@runtime_checkable
class ServerAudit(Protocol):
    """A store whose server keeps its own audit log of the account."""

    def server_audit(self, *, since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]: ...


@runtime_checkable
class Configurable(Protocol):
    """A store that uses part of the vault config (S3: SSE-KMS with the vault's KMS key)."""

    def configure(self, *, kms_key_id: str | None) -> None: ...


def open_store(url: str) -> ObjectStore:
    """Open a store from its URL: a folder path (or ``file://``), ``s3://BUCKET/PREFIX``,
    or a Live-Data server ``https://HOST`` (``http://`` for 127.0.0.1 and localhost)."""
    if url.startswith("s3://"):
        from livedata_cli.stores.s3 import S3Store

        return S3Store(url)
    if url.startswith(("https://", "http://")):
        from livedata_cli.stores.api import ApiStore

        return ApiStore(url)
    if "://" in url and not url.startswith("file://"):
        raise UsageError(f"unsupported store URL {url!r}: this version stores to a folder")
    from livedata_cli import envfail
    from livedata_cli.stores.local import LocalStore

    store = LocalStore(url.removeprefix("file://"))
    envfail.register(envfail.STORE, store.root)
    return store


if TYPE_CHECKING:  # mypy holds each store class to the signatures of the capabilities it has
    from livedata_cli.stores.api import ApiStore
    from livedata_cli.stores.local import LocalStore
    from livedata_cli.stores.s3 import S3Store

    _FOLDER: tuple[type[LocalFolder]] = (LocalStore,)
    _S3: tuple[type[RangedReads], type[ResumableWrites], type[PresignedLinks], type[Configurable]] = (S3Store,) * 4
    _API: tuple[type[RangedReads], type[ShareHosting], type[ServerAudit]] = (ApiStore,) * 3
