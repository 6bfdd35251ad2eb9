"""Object stores: where ciphertext lives.  One protocol, several backends.

Keys are ``/``-separated names such as ``config``, ``keys/<slot>``,
``data/<object-id>`` and ``journal/<name>``; every one of them is opaque to
the store operator (DESIGN §3).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol

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
