"""Journal compaction: the whole vault state restated in one snapshot journal.

:func:`compact_journals` writes a *snapshot*: a journal whose chain record
says ``"snapshot": true`` and ``"covers"`` (for every writer, the counter and
hash of its newest journal applied here; and whether journals made before
chains are covered), followed by records that restate everything those
journals built: a ``put`` per version (with ``deleted`` for the trash, its
tags, note, search text and current wrapped key), a ``numbered`` record per
purged version (so numbers stay taken), and ``share``/``unshare`` records.
Then the covered journals are deleted.

Crash-safe at every step: the snapshot is one atomic object; until the
covered journals are gone, a reader applies both (the snapshot drops what
they put and restates it) and a covered journal met after its snapshot is
skipped; a rerun deletes what is left.  Journals written meanwhile by other
writers are not covered and stay.

``prune`` calls :func:`compact_journals`; ``keys rotate`` calls it with a
``rewrap`` that moves every data key to the new master key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livedata_cli import journal
from livedata_cli.vault import replay

if TYPE_CHECKING:
    from livedata_cli.index.core import Index
    from livedata_cli.vault.core import Vault

# (object id, wrapped key) -> the wrapped key for the snapshot
Rewrap = Callable[[str, bytes], bytes]


@dataclass(frozen=True)
class Compaction:
    snapshot: str  # the snapshot journal's name
    records: int
    deleted: int  # covered journals deleted


def snapshot_records(index: Index, rewrap: Rewrap | None = None, key_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The records that restate this index: versions, purged numbers, shares."""
    from livedata_cli.index import core, files

    db = index.db
    for r in files.restated(db):
        wrapped = bytes(r["wrapped_key"])
        if rewrap is not None and r["kind"] == "file" and r["object"]:
            wrapped = rewrap(r["object"], wrapped)
        rec: dict[str, Any] = {
            "t": "put", "vid": r["vid"], "path": r["path"], "kind": r["kind"], "object": r["object"],
            "offset": r["offset"], "length": r["length"], "size": r["size"], "mtime": r["mtime"], "mode": r["mode"],
            "mime": r["mime"], "hash": r["hash"], "header_hash": r["header_hash"], "wrapped_key": wrapped.hex(),
            "key_id": key_id or r["key_id"], "created": r["created"], "derived_from": r["derived_from"],
            "tags": json.loads(r["tags"]), "notes": r["notes"], "deleted": r["deleted"], "target": r["target"],
            "protected": bool(r["protected"]), "pack": r["pack"],
        }
        if r["text"] is not None:
            rec["text"] = r["text"]
        yield rec
    for vid, path, created in files.purged_numbers(db):
        yield {"t": "numbered", "vid": vid, "path": path, "created": created}
    for r in core.shares(db):
        yield {
            "t": "share", "id": r["id"], "vid": r["vid"], "path": r["path"], "object": r["object"], "kind": r["kind"],
            "created": r["created"], "expires": r["expires"], "max_downloads": r["max_downloads"],
            "password": bool(r["password"]), "location": r["location"],
        }
        if r["revoked"] is not None:
            yield {"t": "unshare", "id": r["id"], "time": r["revoked"]}


def compact_journals(vault: Vault, *, rewrap: Rewrap | None = None, key_id: str | None = None) -> Compaction:
    """Write a snapshot of the vault state and delete the journals it covers.

    The caller holds the vault lock.  Refuses (exit 5 or 8) when the last sync
    found damaged journals or records it could not apply: compacting would
    lose them.
    """
    vault.sync(strict=True)
    links = vault.index.journal_links()
    floors: dict[str, tuple[int, str]] = {}
    legacy = False
    for _name, (w, s, h, _p) in links.items():
        if w is None or s is None:
            legacy = True
        elif w not in floors or s > floors[w][0]:
            floors[w] = (s, h or "")
    covered = [n for n, (w, s, _h, _p) in links.items() if w is None or (s is not None and s <= floors[w][0])]
    records = list(snapshot_records(vault.index, rewrap, key_id))
    extra = {"snapshot": True, "covers": {w: [s, h] for w, (s, h) in sorted(floors.items())}, "legacy": legacy}
    name = replay.write(vault, records, vault.index, snapshot=extra)
    return Compaction(name, len(records), delete_covered(vault, covered))


def delete_covered(vault: Vault, names: list[str]) -> int:
    """Delete journals a snapshot covers (a rerun after a crash finds fewer)."""
    present = set(vault.store.list(journal.PREFIX))
    gone = 0
    for name in sorted(names):
        if name in present:
            vault.store.delete(name)
            gone += 1
    vault.index.forget_journals(names)
    return gone
