"""What a batch command did, file by file: the report that upload, download
and convert print (with ``--json``, as one document)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livedata_cli import envfail, names
from livedata_cli.errors import LivedataError, Skipped

__all__ = ["BatchReport", "ItemResult", "Progress", "noop"]

Progress = Callable[[int], None]


def noop(_n: int) -> None:
    """A progress callback that shows nothing."""


@dataclass
class ItemResult:
    """What happened to one file of a batch."""

    source: str
    path: str
    status: str  # new, changed, unchanged, failed, skipped, downloaded
    size: int = 0
    version: str | None = None
    stored: int = 0  # bytes written to the store
    deduplicated: bool = False  # content already in the vault: no new data
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": names.for_json(self.source),
            "path": names.for_json(self.path),
            "status": self.status,
            "size": self.size,
        }
        if self.version:
            d["id"] = self.version
        if self.status in ("new", "changed"):
            d["stored"] = self.stored
            d["deduplicated"] = self.deduplicated
        if self.error:
            d["error"] = self.error
            d["exit_code"] = self.exit_code
        return d


@dataclass
class BatchReport:
    items: list[ItemResult] = field(default_factory=list)
    bytes_read: int = 0
    bytes_stored: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        return [i for i in self.items if i.status == "failed"]

    def fail(self, source: str, path: str, err: LivedataError | OSError) -> None:
        if isinstance(err, Skipped):
            self.items.append(ItemResult(source, path, "skipped", error=err.message))
            return
        known = envfail.translate(err) if isinstance(err, OSError) else None
        if known is not None:
            msg, code = known.message, int(known.exit_code)
            msg = msg.removeprefix(f"{source}: ")  # the line names the source already
        elif isinstance(err, OSError):
            named = err.filename is not None and os.fsdecode(err.filename) not in (source, path)
            msg = f"{err.strerror or err}" + (f": {os.fsdecode(err.filename)}" if named else "")
            code = 3 if isinstance(err, FileNotFoundError) else 1
        else:
            msg, code = err.message, int(err.exit_code)
        self.items.append(ItemResult(source, path, "failed", error=msg, exit_code=code))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.status] = out.get(i.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "counts": self.counts(),
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "duration": round(self.duration, 3),
        }
