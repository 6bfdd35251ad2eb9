"""What a vault holds and how it changed: ``stats`` and ``diff``, from the index alone.

Both read the local index only (no store, no key), so they are as fast as
``ls`` and work offline; ``livedata sync`` first brings in other machines' work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livedata_cli.index.core import Index, Version


@dataclass
class TagStats:
    files: int = 0
    bytes: int = 0


@dataclass
class Stats:
    """Counts of one prefix: live files, every version, logical and stored bytes."""

    prefix: str
    files: int = 0  # paths whose newest version is live (not in the trash)
    versions: int = 0  # every version kept, trash included
    trashed: int = 0  # paths whose newest version is in the trash
    logical_bytes: int = 0  # the newest live version of each file
    all_versions_bytes: int = 0  # every version kept, as if each were stored whole
    stored_bytes: int = 0  # ciphertext the store holds for them, each object once
    objects: int = 0
    tags: dict[str, TagStats] = field(default_factory=dict)

    @property
    def dedup_ratio(self) -> float:
        """Plaintext kept per byte stored (above 1: versions and copies share data)."""
        return self.all_versions_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "files": self.files,
            "versions": self.versions,
            "trashed": self.trashed,
            "logical_bytes": self.logical_bytes,
            "all_versions_bytes": self.all_versions_bytes,
            "stored_bytes": self.stored_bytes,
            "objects": self.objects,
            "dedup_ratio": round(self.dedup_ratio, 3),
            "tags": {t: {"files": s.files, "bytes": s.bytes} for t, s in sorted(self.tags.items())},
        }


def stats(index: Index, prefix: str = "") -> Stats:
    out = Stats(prefix)
    for v, _n in index.latest(prefix):
        if v.kind != "file":
            continue
        out.files += 1
        out.logical_bytes += v.size
        for tag in v.tags:
            t = out.tags.setdefault(tag, TagStats())
            t.files += 1
            t.bytes += v.size
    out.trashed = sum(1 for v, _ in index.latest(prefix, trash=True) if v.kind == "file")
    out.versions, out.all_versions_bytes, out.objects, out.stored_bytes = index.version_totals(prefix)
    return out


@dataclass
class Change:
    path: str
    change: str  # added, removed, changed
    before: Version | None
    after: Version | None

    def to_json(self) -> dict[str, Any]:
        def side(v: Version | None) -> dict[str, Any] | None:
            return None if v is None else {"version": v.number, "id": v.vid, "size": v.size, "created": v.created}

        return {"path": self.path, "change": self.change, "before": side(self.before), "after": side(self.after)}


def diff(index: Index, prefix: str, before: float, after: float) -> list[Change]:
    """The files under ``prefix`` added, removed and changed between two points in time."""
    old = {v.path: v for v in index.as_of(prefix, before) if v.kind == "file"}
    new = {v.path: v for v in index.as_of(prefix, after) if v.kind == "file"}
    changes: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a is None:
            changes.append(Change(path, "added", None, b))
        elif b is None:
            changes.append(Change(path, "removed", a, None))
        elif a.vid != b.vid and (a.hash != b.hash or a.mode != b.mode):
            changes.append(Change(path, "changed", a, b))
    return changes
