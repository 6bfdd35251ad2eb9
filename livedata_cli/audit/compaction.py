"""Audit compaction: the many small audit objects of a chain merged into few.

Every command that leaves events mirrors them to the store as one object
``audit/<chain>/<first seq>-<last seq>`` (:mod:`livedata_cli.audit.chain`), so a
chain's objects grow with the number of commands.  ``livedata prune`` calls
:func:`compact_audit` under its exclusive store lock: a chain with more than
``LIVEDATA_AUDIT_COMPACT_AFTER`` objects (default :data:`COMPACT_AFTER`) is
rewritten as *compacted* objects, each holding up to :data:`MAX_EVENTS`
consecutive events of the chain, unchanged (the same fields, seq, prev and
MAC), named by the range it holds, in the same encoding as any audit object.
A compacted object is therefore an ordinary audit object that holds more
events: every reader and ``audit verify`` treat it as such, on any machine.

Ranges are aligned: chunk ``k`` holds events ``k*MAX_EVENTS+1 ..
(k+1)*MAX_EVENTS`` (the last one ends at the chain's newest event), so a
full chunk is written once and only the last is rewritten by later runs.

A chain is compacted only when its store copy verifies on its own: every
object authenticates under its name, holds only events of its range, every
event's MAC is valid and the events run from #1 without a gap, a duplicate
that differs, or a broken link.  A chain that does not is left as it is, for
``audit verify`` to report: compaction never launders a tampered trail.

Crash safety: the compacted objects are written (each one atomic, durable
before ``put_bytes`` returns) before any old object is deleted.  Killed in
between, the store holds the same events twice, with equal MACs, which a
reader merges by sequence number (``audit verify`` passes, ``livedata
audit`` lists each event once); the next prune deletes the rest.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from livedata_cli import journal
from livedata_cli.audit.chain import FIELDS, PREFIX, OpenVault, Trail, _name_range
from livedata_cli.errors import UsageError

if TYPE_CHECKING:
    from livedata_cli.locking import StoreLock


class LockedVault(OpenVault, Protocol):
    """An opened vault under its exclusive store lock (``prune``)."""

    @property
    def store_lock(self) -> StoreLock | None: ...

# prune compacts a chain once it has more than this many audit objects.
COMPACT_AFTER = 200
ENV = "LIVEDATA_AUDIT_COMPACT_AFTER"
# Events per compacted object (about 400 bytes each before compression).
MAX_EVENTS = 50_000


@dataclass
class AuditCompaction:
    """What one run did: chains compacted, objects written and deleted, chains left alone."""

    chains: int = 0
    written: int = 0
    deleted: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"chains": self.chains, "written": self.written, "deleted": self.deleted, "skipped": self.skipped}


def threshold() -> int:
    """``LIVEDATA_AUDIT_COMPACT_AFTER``, or :data:`COMPACT_AFTER` when unset."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return COMPACT_AFTER
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{ENV} must be a whole number of audit objects, not {raw!r}") from None
    if value < 1:
        raise UsageError(f"{ENV} must be at least 1, not {value}")
    return value


def chunk_name(chain: str, first: int, last: int) -> str:
    return f"{PREFIX}{chain}/{first:012d}-{last:012d}"


def chunks(newest: int, size: int = MAX_EVENTS) -> list[tuple[int, int]]:
    """The aligned ranges that hold events ``1..newest``."""
    return [(lo, min(lo + size - 1, newest)) for lo in range(1, newest + 1, size)]


def compact_audit(
    vault: LockedVault, *, after: int | None = None, pause: Callable[[str], None] | None = None
) -> AuditCompaction:
    """Compact every chain of the vault's store with more than ``after`` objects.

    The caller holds the exclusive store lock (``prune``).  ``pause(stage)``
    is the test-only pause point of :mod:`livedata_cli.vault.store_locking`."""
    limit = threshold() if after is None else after
    trail = Trail.of(vault)
    done = AuditCompaction()
    for chain, names in sorted(trail.store_objects().items()):
        if len(names) <= limit:
            continue
        by_seq, problems = trail._load_store_chain(chain, names)
        events = [by_seq[s] for s in sorted(by_seq)]
        walk = trail._walk(chain, events, "store")
        if problems or walk.problem is not None or not events:
            why = (problems[0] if problems else walk.problem)
            done.skipped.append(f"audit chain {chain} left uncompacted: "
                                + (why.message if why is not None else "it holds no events"))
            continue
        _compact_chain(vault, trail, chain, names, by_seq, walk.head_seq, done, pause)
    return done


def _compact_chain(
    vault: LockedVault, trail: Trail, chain: str, names: list[str], by_seq: dict[int, dict[str, Any]],
    newest: int, done: AuditCompaction, pause: Callable[[str], None] | None,
) -> None:
    present = set(names)
    keep: set[str] = set()
    for lo, hi in chunks(newest):
        name = chunk_name(chain, lo, hi)
        if name in present:  # written by an earlier run (or one command's own object)
            keep.add(name)
            continue
        events = [_stored(by_seq[s]) for s in range(lo, hi + 1)]
        _guard(vault)
        try:
            trail.store.put_bytes(name, journal.encode(vault.master_key, vault.vault_id, name, events), exclusive=True)
        except FileExistsError:  # listed after ours was: keep both, they hold the same events
            name = f"{name}-{secrets.token_hex(4)}"
            trail.store.put_bytes(name, journal.encode(vault.master_key, vault.vault_id, name, events), exclusive=True)
        keep.add(name)
        done.written += 1
    if pause is not None:
        pause("audit-compacted")
    first = True
    for name in names:
        if name in keep:
            continue
        lo, hi = _name_range(name)
        if hi < 1 or hi > newest:
            continue  # only objects whose events the compacted ones hold
        _guard(vault)
        trail.store.delete(name)
        done.deleted += 1
        if first and pause is not None:
            pause("audit-compact-deleting")
        first = False
    done.chains += 1


def _guard(vault: LockedVault) -> None:
    """Before each write and deletion: the store lock was refreshed recently (no
    store call), as ``vault.store_locking.guard_fast`` checks for the rest of prune."""
    if vault.store_lock is not None:
        vault.store_lock.check(in_store=False)


def _stored(e: dict[str, Any]) -> dict[str, Any]:
    """An event as mirrored: the MACed fields and the MAC, nothing a reader added."""
    return {k: e[k] for k in ("vault", "chain", "seq", "prev", "mac", *FIELDS)}
