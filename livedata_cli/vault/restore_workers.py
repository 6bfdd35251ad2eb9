"""Opening and writing the small members of a restore in forked worker processes.

A restore of many small files is mostly Python work per file (a data key
unwrapped, a container opened, a file created, written and renamed), and
threads take turns at it. On a machine with several cores a restore of
:data:`MIN_FILES` or more hands the fetched members to workers forked before
its threads start (:mod:`livedata_cli.forked`); they inherit the vault key and
its id, and unwrap, authenticate, decrypt and write each member as the
command's threads do (the same :func:`open_blob`, then
:func:`livedata_cli.localfs.write_file`). A member whose key needs more than
the vault key (a KMS data key, a file password, a previous vault key) comes
back as None and is opened by the command's threads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from livedata_cli import forked, localfs
from livedata_cli.crypto import container, filepass
from livedata_cli.crypto.wrap import WRAPPED_LEN, unwrap_data_key
from livedata_cli.errors import IntegrityError, LivedataError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

# Fewer files than this are not worth forking for (a fork costs milliseconds).
MIN_FILES = 200
MAX_WORKERS = 4


@dataclass(frozen=True)
class Member:
    """What a worker needs of one member: its record's fields and its bytes."""

    target: str | None  # None: check only (verify --data)
    path: str  # in the vault, for messages
    oid: str
    wrapped_key: bytes
    header_hash: str
    size: int
    mode: int
    mtime: float | None
    fresh: bool
    blob: bytes


Result = int | LivedataError | OSError | None  # None: the command's threads open it


def open_blob(
    key: bytes,
    blob: bytes | memoryview,
    dst: BinaryIO,
    header_hash: str,
    size: int,
    path: str,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Authenticate and decrypt one member's container into ``dst``; its length."""
    n = container.decrypt_stream(
        key, io.BytesIO(blob), dst, expected_header_hash=header_hash, on_progress=on_progress
    )
    if n != size:
        raise IntegrityError(f"{path}: {n} bytes decrypted where the record says {size}")
    return n


def write_member(
    key: bytes,
    blob: bytes | memoryview,
    target: str | Path | None,
    *,
    header_hash: str,
    size: int,
    path: str,
    mode: int,
    mtime: float | None,
    fresh: bool,
) -> int:
    """Restore one member to ``target`` (or only check it, when None)."""
    if target is None:
        with open(os.devnull, "wb") as sink:
            return open_blob(key, blob, sink, header_hash, size, path)
    return localfs.write_file(
        Path(target),
        lambda out: open_blob(key, blob, out, header_hash, size, path),
        mode=mode,
        mtime=mtime,
        fresh=fresh,
    )


def workers_for(files: int) -> int:
    """How many workers a restore of ``files`` small members gets (0: none)."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return 0 if cores < 2 or files < MIN_FILES else min(cores, MAX_WORKERS)


def start(master_key: bytes, vault_id: str, workers: int) -> ProcessPoolExecutor:
    """Fork the workers (before the restore starts its threads)."""
    return forked.start(workers, _keep_keys, (master_key, vault_id))


# The keys a forked worker inherits (never sent through a pipe).
_keys: tuple[bytes, str] | None = None


def _keep_keys(master_key: bytes, vault_id: str) -> None:
    global _keys
    _keys = (master_key, vault_id)


def write_members(members: list[Member]) -> list[Result]:
    """In a worker: restore each member whose key the vault key opens."""
    assert _keys is not None
    master, vault_id = _keys
    out: list[Result] = []
    for m in members:
        key = _data_key(master, vault_id, m)
        if key is None:
            out.append(None)
            continue
        try:
            out.append(
                write_member(
                    key,
                    m.blob,
                    m.target,
                    header_hash=m.header_hash,
                    size=m.size,
                    path=m.path,
                    mode=m.mode,
                    mtime=m.mtime,
                    fresh=m.fresh,
                )
            )
        except (LivedataError, OSError) as e:
            out.append(e)
    return out


def _data_key(master: bytes, vault_id: str, m: Member) -> bytes | None:
    if len(m.wrapped_key) != WRAPPED_LEN:  # a KMS data key: the command asks KMS
        return None
    try:
        key = unwrap_data_key(master, vault_id, m.oid, m.wrapped_key)
    except IntegrityError:  # perhaps a previous vault key: the command tries those
        return None
    return None if filepass.is_envelope(key) else key
