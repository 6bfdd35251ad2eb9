"""Reading one version: decrypted into a stream or a file, or compared with a
local file.  Every byte is authenticated before it is written; a file reaches
its name only once its last segment authenticated (``localfs.write_file``)."""

from __future__ import annotations

import hmac
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from livedata_cli import localfs, names, packs
from livedata_cli.crypto import container
from livedata_cli.errors import AuthError, IntegrityError, NotFound, UsageError
from livedata_cli.index.core import Version
from livedata_cli.vault.reports import Progress, noop

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault

__all__ = ["already_restored", "download_to", "read_version"]


def read_version(vault: Vault, v: Version, dst: BinaryIO, progress: Progress = noop) -> int:
    """Authenticate and decrypt one version into a stream."""
    data_key = vault._data_key(v.object, v.wrapped_key)
    try:
        source = packs.open_stored(vault.store, v.store_key, v.pack, v.offset, v.length)
    except NotFound:
        moved = _repacked(vault, v)
        if moved is None:
            raise
        v, source = moved, packs.open_stored(vault.store, moved.store_key, moved.pack, moved.offset, moved.length)
    with source as src:
        if v.offset and not v.pack:
            src.seek(v.offset)
        n = container.decrypt_stream(
            data_key,
            cast(BinaryIO, packs.Slice(src, v.length)) if v.pack else src,
            dst,
            expected_header_hash=v.header_hash,
            on_progress=progress,
        )
    if n != v.size:
        raise IntegrityError(f"{v.path}: {n} bytes decrypted where the record says {v.size}")
    vault.events.read(v.path, v.object)
    return n


def _repacked(vault: Vault, v: Version) -> Version | None:
    """A packed version whose pack is gone may have been moved by a prune on
    another machine (livedata_cli/vault/maintenance.py): replay, and look again."""
    if not v.pack:
        return None
    vault.sync()
    moved = vault.index.version_by_id(v.vid)
    return moved if moved is not None and moved.store_key != v.store_key else None


def download_to(vault: Vault, v: Version, target: Path, progress: Progress = noop, *, fresh: bool = False) -> int:
    """Write one version to a file, atomically: a temporary file renamed into
    place only after the final segment authenticated (``fresh``: as
    ``localfs.write_file``'s)."""
    if v.kind == "symlink":
        target.parent.mkdir(parents=True, exist_ok=True)
        localfs.make_symlink(target, names.to_local(v.target or ""), v.mtime)
        return 0
    if v.kind == "dir":
        raise UsageError(f"{v.path} is a folder: download {v.path}/ to restore its contents")
    return localfs.write_file(
        target, lambda out: read_version(vault, v, out, progress), mode=v.mode, mtime=v.mtime, fresh=fresh
    )


def already_restored(vault: Vault, v: Version, target: Path) -> bool:
    """Whether ``target`` already holds exactly this version: same size and
    modification time, and the same content (its keyed hash; a protected
    version, which has none, is decrypted and compared)."""
    if v.kind == "symlink":
        return localfs.same_link(target, names.to_local(v.target or ""))
    if v.kind != "file" or not localfs.same_file(target, v.size, v.mtime):
        return False
    try:
        if v.hash:
            return any(hmac.compare_digest(localfs.file_digest(target, key), v.hash) for key in vault.plaintext_hash_keys())
        with open(target, "rb") as local:
            same = _SameAs(local)
            read_version(vault, v, cast(BinaryIO, same))
            return same.equal and not local.read(1)
    except (OSError, AuthError):  # unreadable, or its file password is not at hand
        return False


class _SameAs(io.RawIOBase):
    """A sink that compares what is written with a file's bytes."""

    def __init__(self, local: BinaryIO) -> None:
        self._local = local
        self.equal = True

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self.equal and self._local.read(len(data)) != data:
            self.equal = False
        return len(data)
