"""Retention policies for ``livedata prune``: which versions of a path to keep.

The rules are those of restic's ``forget``: the newest N versions, then the
newest version of each of the last N days, weeks and months that have one.
The newest version of a path is always kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from livedata_cli.errors import UsageError


@dataclass(frozen=True)
class Policy:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def check(self) -> None:
        if min(self.last, self.daily, self.weekly, self.monthly) < 0:
            raise UsageError("--keep-* values must be 0 or more")
        if not (self.last or self.daily or self.weekly or self.monthly):
            raise UsageError("give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly")


def _bucket(fmt: str) -> Callable[[float], str]:
    return lambda t: time.strftime(fmt, time.localtime(t))


def keep(created_newest_first: Sequence[float], policy: Policy) -> set[int]:
    """Indexes (into the newest-first sequence) of the versions to keep."""
    kept = {0} if created_newest_first else set()
    kept.update(range(min(policy.last, len(created_newest_first))))
    for count, bucket in (
        (policy.daily, _bucket("%Y-%m-%d")),
        (policy.weekly, _bucket("%G-W%V")),
        (policy.monthly, _bucket("%Y-%m")),
    ):
        seen: set[str] = set()
        for i, t in enumerate(created_newest_first):
            if len(seen) >= count:
                break
            b = bucket(t)
            if b not in seen:
                seen.add(b)
                kept.add(i)
    return kept
