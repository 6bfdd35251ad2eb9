"""Re-encrypting a file's versions under fresh data keys, for file passwords.

Journals are append-only, so rewrapping a data key leaves the earlier records
(the key wrapped under the vault key alone, or under the old password) in the
store.  ``password set`` and ``password change`` therefore re-encrypt every
version into a new object under a fresh data key and delete the old objects:
an old wrapped key then opens nothing the store still holds.

The order makes a killed run harmless:

1. each version's container is re-encrypted into ``data/<new id>`` (the old
   one authenticated segment by segment on the way, in bounded memory);
2. one journal names the new objects (``file-password`` records carrying the
   new object, length and header hash);
3. the old objects are deleted.  A pack that still holds other members is
   rewritten first: the other members' containers are copied byte for byte
   into a new pack, a journal moves them there (``relocate`` records), and
   only then does the old pack go.

A run killed before step 2 leaves unreferenced new objects, one killed after
it leaves unreferenced old ones; ``prune`` reclaims both, and the file opens
all along.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from livedata_cli.crypto import container
from livedata_cli.errors import IntegrityError
from livedata_cli.index.core import Version
from livedata_cli.packs import PackWriter, Slice, open_stored

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault


def reseal_versions(
    vault: Vault, keyed: list[tuple[Version, bytes]], seal: Callable[[str, bytes], bytes]
) -> list[dict[str, Any]]:
    """Re-encrypt each version's container under a fresh data key, whose record
    form ``seal(object id, data key)`` gives (under the new file password);
    returns the ``file-password`` records naming the new objects.  Versions
    sharing an object share its new one too."""

    done: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for v, data_key in keyed:
        fields = done.get(v.object)
        if fields is None:
            oid, new_dk = secrets.token_hex(16), secrets.token_bytes(32)
            with open_stored(vault.store, v.store_key, v.pack, v.offset, v.length) as src:
                if v.offset and not v.pack:
                    src.seek(v.offset)
                old = cast(BinaryIO, Slice(src, v.length)) if v.pack else src
                with vault.store.writer(f"data/{oid}") as out:
                    header, size, length = container.reseal_stream(
                        data_key, old, new_dk, out, expected_header_hash=v.header_hash
                    )
                    if size != v.size:  # inside the writer: the new object is dropped
                        raise IntegrityError(f"{v.path}: {size} bytes decrypted where the record says {v.size}")
            fields = done[v.object] = {
                "object": oid,
                "pack": None,
                "offset": 0,
                "length": length,
                "header_hash": container.header_hash(header),
                "wrapped_key": seal(oid, new_dk).hex(),
            }
        records.append(
            {"t": "file-password", "vid": v.vid, **fields, "hash": "", "protected": True, "time": time.time()}
        )
    return records


def drop_old_objects(vault: Vault, old: list[Version]) -> int:
    """Delete the store objects these versions were in, now that no record
    points there; a pack with other members is rewritten without them first.
    Returns how many objects were deleted.  An object another path still
    refers to as its own (the same content stored without a password) stays."""
    deleted = 0
    for key in sorted({v.store_key for v in old}):
        pack = key.removeprefix("data/")
        if vault.index.store_refs(key):
            members = [x for x in vault.index.all_versions() if x.pack == pack]
            if not members:
                continue  # an object of its own still used by another version
            _repack(vault, key, members)
        if vault.store.exists(key):
            vault.store.delete(key)
            deleted += 1
    return deleted


def _repack(vault: Vault, key: str, members: list[Version]) -> None:
    """Copy the other members of a pack, byte for byte, into a new pack, and
    point their records there (one journal) before the old pack is deleted."""
    writer = PackWriter(vault.store)
    moved: dict[tuple[int, int], tuple[str, int]] = {}  # (offset, length) -> new place
    records: list[dict[str, Any]] = []
    try:
        with vault.store.open(key) as src:
            for m in sorted(members, key=lambda x: x.offset):
                place = moved.get((m.offset, m.length))
                if place is None:
                    src.seek(m.offset)
                    sealed = src.read(m.length)
                    if len(sealed) != m.length:
                        raise IntegrityError(f"{key} is shorter than its member {m.object} needs")
                    place = moved[(m.offset, m.length)] = writer.add(sealed)
                records.append({"t": "relocate", "vid": m.vid, "pack": place[0], "offset": place[1]})
        writer.seal()
    except BaseException as e:
        writer.discard(e)
        raise
    vault._write_journal(records)
