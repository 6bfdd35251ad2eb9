"""The local index encrypted at rest (``livedata lock --index``).

The index (``index.sqlite`` under the home) holds names, tags, notes and
indexed words in plaintext, so that ``search`` and ``ls`` need no key.  On a
laptop without disk encryption that is readable by whoever holds the disk.
``livedata lock --index`` therefore also encrypts the index: the file
becomes ``index.sqlite.locked``, a container (DESIGN §4) under
``subkey(master key, vault id, "index")`` with a fresh salt each time, and
the plaintext file is removed.  The next command that needs the index
(``search`` and ``ls`` included) needs the vault key: it unlocks (keyring,
environment, prompt), decrypts the index back into place and runs as usual;
the index then stays plaintext until the next ``lock --index``.

What it does not do: the removed plaintext file is unlinked, not shredded
(SSDs and journaling file systems keep old blocks: use disk encryption for
that); a rolled-back ``.locked`` file (an older copy) opens, and the chained
journals and audit trail catch what it lacks on the next ``sync``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from livedata_cli.errors import (
    IndexLocked,
)

SUFFIX = ".locked"


def locked_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + SUFFIX)


def is_locked(index_path: Path) -> bool:
    """Whether only the encrypted index is there (after a crash both may be: the plaintext one wins)."""
    return not index_path.exists() and locked_path(index_path).exists()


def check_unlocked(index_path: Path) -> None:
    if is_locked(index_path):
        raise IndexLocked(
            f"the local index is encrypted ('livedata lock --index'): "
            f"this command cannot open {index_path.name} without the vault key"
        )


def _key(master_key: bytes, vault_id: str) -> bytes:
    from livedata_cli.crypto.wrap import subkey

    return subkey(master_key, vault_id, "index")


def _tmp(near: Path) -> Path:
    return near.with_name(f".{near.name}.{secrets.token_hex(4)}.tmp")


def lock(index_path: Path, master_key: bytes, vault_id: str) -> int:
    """Encrypt the index into place of the plaintext one; returns the plaintext size."""
    from livedata_cli.crypto.container import encrypt_stream

    if is_locked(index_path):
        return 0
    con = sqlite3.connect(index_path, timeout=30, isolation_level=None)
    try:
        # Everything into the main file, and no WAL left beside it.
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()
    target = locked_path(index_path)
    tmp = _tmp(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as dst, open(index_path, "rb") as src:
            _header, size, _length = encrypt_stream(_key(master_key, vault_id), src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for leftover in (index_path, *(index_path.with_name(index_path.name + s) for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    return size


def unlock(index_path: Path, master_key: bytes, vault_id: str) -> int:
    """Decrypt the index back into place (only after its last segment authenticated); returns its size."""
    from livedata_cli.crypto.container import decrypt_stream

    source = locked_path(index_path)
    tmp = _tmp(index_path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
            size = decrypt_stream(_key(master_key, vault_id), src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, index_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    source.unlink(missing_ok=True)
    return size
