"""Journal replay and journal writing, with the chain of :mod:`livedata_cli.state`.

Replay never bricks the vault and never hides a loss:

- a journal that does not authenticate is *damaged*: it is named, every
  other journal is still applied, and it is tried again on the next sync;
- a record that cannot be applied is rolled back alone and named (exit 8 on
  ``sync``), the rest of its journal applies;
- a chain that has a gap, a repeated counter, a journal copied under another
  name, or a head this machine (or another writer) saw that the store no
  longer has, is "the store lost or rolled back journal ...": exit 5 on every
  command that syncs, after everything intact was applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livedata_cli import journal, state
from livedata_cli.errors import IntegrityError, NotFound, PartialFailure

if TYPE_CHECKING:
    from livedata_cli.index.core import Index
    from livedata_cli.vault.core import Vault

# Kept in the index's meta table: what the last sync could not use.
DAMAGED = "damaged_journals"
BAD_RECORDS = "bad_records"
FLOORS = "snapshot_floors"  # what the snapshots applied here cover


@dataclass
class Floors:
    """Per writer, the newest journal a snapshot covers; and whether journals
    made before chains are covered."""

    writers: dict[str, tuple[int, str]] = field(default_factory=dict)
    legacy: bool = False

    def covers(self, writer: str | None, seq: int | None) -> bool:
        if writer is None or seq is None:
            return self.legacy
        return seq <= self.writers.get(writer, (0, ""))[0]

    def add(self, link: state.Link, legacy: bool) -> None:
        for w, (s, h) in link.covers.items():
            if s > self.writers.get(w, (0, ""))[0]:
                self.writers[w] = (s, h)
        self.legacy = self.legacy or legacy

    @staticmethod
    def load(index: Index) -> Floors:
        import json

        d = json.loads(index.get_meta(FLOORS) or "{}")
        return Floors({w: (int(v[0]), str(v[1])) for w, v in d.get("writers", {}).items()}, bool(d.get("legacy")))

    def save(self, index: Index) -> None:
        import json

        index.set_meta(FLOORS, json.dumps({"writers": {w: list(v) for w, v in self.writers.items()}, "legacy": self.legacy}))


@dataclass
class Replay:
    journals: int = 0
    records: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # journal -> why
    bad_records: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # chain problems, worded for the user


def journal_time(name: str) -> float:
    """The time a journal's name says it was written (0 when the name has none)."""
    stem = name.removeprefix(journal.PREFIX).split("-", 1)[0]
    return int(stem) / 1e9 if stem.isdigit() else 0.0


def sync(vault: Vault, *, rebuild: bool) -> Replay:
    """Apply the store's journals this index has not seen, then check the chain."""
    import json

    index = vault.index
    if rebuild or index.get_meta("rebuild"):
        index.clear()
    out = Replay()
    # The heads this home knows, read before the listing: a journal another
    # process of this home writes meanwhile is in the store before its head is.
    # Likewise the journals this index has applied: read after the listing,
    # they could include one that another process wrote and applied since,
    # which the listing lacks and which would look lost.
    st = vault.pins()
    links = index.journal_links()
    listing = list(vault.store.list(journal.PREFIX))
    by_hash = {h: n for n, (_w, _s, h, _p) in links.items() if h}
    by_seq = {(w, s): n for n, (w, s, _h, _p) in links.items() if w is not None and s is not None}
    seen_heads: list[tuple[str, str, int, str]] = []  # (journal naming it, writer, counter, hash)
    floors = Floors.load(index)
    for name in listing:
        if name in links:
            continue
        try:
            blob = vault.store.get_bytes(name)
        except NotFound:
            continue  # deleted since the listing (a compaction): its snapshot covers it
        except IntegrityError as e:  # not an object at all, e.g. a folder planted in a folder store
            out.damaged[name] = e.message
            continue
        digest = state.blob_hash(blob)
        try:
            records = decode(vault, name, blob)
            link = state.Link.of(records, digest)
        except IntegrityError as e:
            if digest in by_hash:
                out.lost.append(f"the store replayed journal {by_hash[digest]} as {name}")
            else:
                out.damaged[name] = e.message
            continue
        if floors.covers(link.writer if link else None, link.seq if link else None):
            # Restated by a snapshot already applied: a leftover of a compaction
            # (or a copy the store kept), recorded and never applied again.
            index.apply(name, [], link=(link.writer, link.seq, link.hash, link.prev) if link else None)
            continue
        if link is not None:
            other = by_seq.get((link.writer, link.seq))
            if other is not None:
                out.lost.append(
                    f"the store replayed journal number {link.seq} of writer {link.writer} as {name} (it is {other})"
                )
                continue
            by_seq[(link.writer, link.seq)] = name
            seen_heads += [(name, w, s, h) for w, (s, h) in link.heads.items()]
        failed: list[str] = []
        chain = (link.writer, link.seq, link.hash, link.prev) if link else (None, None, digest, None)
        covers = None
        if link is not None and link.snapshot:
            floors.add(link, bool(records[0].get("legacy")))
            floors.save(index)
            covers = ({w: s for w, (s, _h) in floors.writers.items()}, floors.legacy)
        if index.apply(name, records, link=chain, failed=failed, covers=covers):
            out.journals += 1
            out.records += len(records) - (1 if link else 0)
        by_hash[digest] = name
        out.bad_records += failed
    applied_before = set(links)
    links = index.journal_links()
    present = set(listing) | (set(links) - applied_before)  # applied meanwhile: read from the store just now
    gone = [n for n, (w, s, _h, _p) in links.items() if n not in present and floors.covers(w, s)]
    if gone:  # compacted away: nothing to check any more
        index.forget_journals(gone)
        links = {n: v for n, v in links.items() if n not in set(gone)}
    # The keyring's copy is read when this home's own record has nothing (a
    # state.json lost or reset): reading it on every sync would cost the
    # keyring's start-up on every command.
    kept = state.keyring_heads(vault.unlocker.cache, vault.vault_id) if not st.heads else {}
    out.lost += _chain_problems(links, present, seen_heads, st, len(out.damaged), floors, kept)
    index.set_meta(DAMAGED, json.dumps(out.damaged, sort_keys=True))
    old = json.loads(index.get_meta(BAD_RECORDS) or "[]")
    if out.bad_records:
        index.set_meta(BAD_RECORDS, json.dumps(old + out.bad_records))
    out.bad_records = old + out.bad_records  # reported until a rebuild applies them
    if not out.lost:
        _advance_heads(vault, links)
    return out


def _chain_problems(
    links: dict[str, tuple[str | None, int | None, str | None, str | None]],
    present: set[str],
    seen_heads: list[tuple[str, str, int, str]],
    st: state.State,
    n_damaged: int,
    floors: Floors,
    kept: dict[str, state.Head],
) -> list[str]:
    """What is wrong with the chain.  Counters missing from it are the store's
    doing unless there are no more of them than damaged journals, which may be
    them (those are reported as damaged)."""
    problems = [f"the store lost or rolled back journal {n}" for n in sorted(links) if n not in present]
    gaps: list[str] = []
    n_missing = 0
    chains: dict[str, dict[int, tuple[str, str, str]]] = {}
    for name, (w, s, h, p) in links.items():
        if w is not None and s is not None:
            chains.setdefault(w, {})[s] = (h or "", p or "", name)
    for w, seqs in sorted(chains.items()):
        top = max(seqs)
        floor, floor_hash = floors.writers.get(w, (0, ""))
        missing = [s for s in range(floor + 1, top) if s not in seqs]
        n_missing += len(missing)
        if missing:
            gaps.append(
                f"the store lost or rolled back journal number {_ranges(missing)} of writer {w} "
                f"(journal {seqs[top][2]} is number {top})"
            )
        for s, (_h, prev, name) in sorted(seqs.items()):
            before = seqs.get(s - 1)
            if s == floor + 1 and floor and before is None:
                before = (floor_hash, "", "")
            if (s == 1 and prev) or (before is not None and before[0] != prev):
                problems.append(f"the store replaced a journal before {name} (writer {w} number {s} does not follow it)")
    beyond: dict[str, int] = {}  # per writer, the highest counter someone names that the store lacks
    wanted = [(f"this machine's record of the newest journal of writer {w}", w, h.seq, h.hash) for w, h in st.heads.items()]
    wanted += [(f"the OS keyring's record of the newest journal of writer {w}", w, h.seq, h.hash) for w, h in kept.items()]
    wanted += [(f"journal {n}", w, s, h) for n, w, s, h in seen_heads]
    for who, w, s, h in wanted:
        if floors.covers(w, s):
            continue
        got = chains.get(w, {}).get(s)
        if got is None:
            gaps.append(f"the store lost or rolled back journal number {s} of writer {w} ({who} names it)")
            top = max(chains.get(w, {0: ("", "", "")}))
            beyond[w] = max(beyond.get(w, 0), s - top)
        elif got[0] != h:
            problems.append(f"the store replaced journal {got[2]} ({who} names another)")
    n_missing += sum(beyond.values())
    if n_missing > n_damaged:
        problems += gaps
    return list(dict.fromkeys(problems))


def _ranges(nums: list[int]) -> str:
    if len(nums) == 1:
        return str(nums[0])
    if nums == list(range(nums[0], nums[-1] + 1)):
        return f"{nums[0]}-{nums[-1]}"
    return ", ".join(map(str, nums[:5])) + (" ..." if len(nums) > 5 else "")


def _advance_heads(vault: Vault, links: dict[str, tuple[str | None, int | None, str | None, str | None]]) -> None:
    """Remember the newest journal of every writer, so a later rollback shows."""
    newest: dict[str, state.Head] = {}
    for name, (w, s, h, _p) in links.items():
        if w is not None and s is not None and (w not in newest or s > newest[w].seq):
            newest[w] = state.Head(s, h or "", name)
    try:
        with state.locked():
            st = state.State.load()
            if st is None:
                return
            changed = False
            for w, head in newest.items():
                mine = st.heads.get(w)
                if mine is None or head.seq > mine.seq:
                    st.heads[w] = head
                    changed = True
            if changed:
                st.save()
                state.remember_heads(vault.unlocker.cache, vault.vault_id, st.heads)
    except OSError:
        pass  # a read-only home: the heads move on at the next sync that can write


def decode(vault: Vault, name: str, blob: bytes) -> list[dict[str, Any]]:
    """A journal's records, under the vault key or, for journals written before
    a ``keys rotate``, under a previous key that the config keeps."""
    try:
        return journal.decode(vault.master_key, vault.vault_id, name, blob)
    except IntegrityError:
        for old in vault.previous_keys():
            try:
                return journal.decode(old, vault.vault_id, name, blob)
            except IntegrityError:
                continue
        raise


def write(
    vault: Vault,
    records: list[dict[str, Any]],
    index: Index,
    before_apply: Callable[[], None] | None = None,
    *,
    snapshot: dict[str, Any] | None = None,
) -> str:
    """Write one journal as the next link of this home's chain, then apply it
    (a ``snapshot``: the chain record's extra fields, see compaction.py)."""
    lines = journal.validate(records)
    from livedata_cli.vault import store_locking

    master = vault.master_key
    vault.store.flush()  # the data a journal refers to is durable before the journal
    store_locking.pause_point("journal")
    with state.locked():
        st = vault.pins(reload=True)
        vault.ensure_config_mac(st)
        own = st.heads.get(st.writer)
        seq, prev = (own.seq + 1, own.hash) if own else (1, "")
        name = journal.new_name()
        chained = [state.chain_record(st.writer, seq, prev, st.heads, **(snapshot or {})), *records]
        blob = journal.encode_lines(master, vault.vault_id, name, [journal.line(chained[0]), *lines])
        store_locking.guard(vault)  # a prune elsewhere may have cleared a stale lock of ours
        vault.store.put_bytes(name, blob)
        digest = state.blob_hash(blob)
        st.heads[st.writer] = state.Head(seq, digest, name)
        st.save()
        state.remember_heads(vault.unlocker.cache, vault.vault_id, st.heads)
    store_locking.guard(vault)  # cleared while it was written: this command does not claim it
    store_locking.pause_point("journaled")
    if before_apply is not None:
        before_apply()
    covers = None
    if snapshot is not None:
        floors = Floors.load(index)
        floors.add(state.Link.of(chained, digest) or _never(), bool(snapshot.get("legacy")))
        floors.save(index)
        covers = ({w: s for w, (s, _h) in floors.writers.items()}, floors.legacy)
    index.apply(name, records, link=(st.writer, seq, digest, prev), covers=covers)
    return name


def _never() -> state.Link:
    raise AssertionError("a chain record was just written")


def raise_for(out: Replay, *, strict: bool, notice: Callable[[str], None]) -> None:
    """Exit 5 for a lost or rolled-back journal (always) and for a damaged one
    (``strict``: the sync, verify and attach commands); exit 8 for records that
    could not be applied (``strict``).  Otherwise a notice, and work goes on."""
    if out.lost:
        more = f" (and {len(out.lost) - 1} more problem(s))" if len(out.lost) > 1 else ""
        raise IntegrityError(out.lost[0] + more)
    if out.damaged:
        first = sorted(out.damaged)[0]
        more = f" and {len(out.damaged) - 1} more" if len(out.damaged) > 1 else ""
        msg = (
            f"journal {first}{more} is damaged ({out.damaged[first]}); every other journal is applied, "
            "and files it may have changed are not served at an older version without --version"
        )
        if strict:
            raise IntegrityError(msg)
        notice(f"livedata: warning: {msg}")
    if out.bad_records:
        more = f" (and {len(out.bad_records) - 1} more)" if len(out.bad_records) > 1 else ""
        msg = f"a journal record could not be applied: {out.bad_records[0]}{more}; everything else is applied"
        if strict:
            raise PartialFailure(msg)
        notice(f"livedata: warning: {msg}")


def check_stored(vault: Vault) -> list[dict[str, str]]:
    """``verify``: every applied journal still in the store, byte for byte
    (its SHA-256 as applied), without decrypting it again."""
    problems = []
    for name, (_w, _s, h, _p) in sorted(vault.index.journal_links().items()):
        if not h:
            continue
        try:
            same = state.blob_hash(vault.store.get_bytes(name)) == h
        except (NotFound, IntegrityError):
            same = False
        if not same:
            problems.append({"path": name, "object": name, "error": f"journal {name} changed in the store since it was applied"})
    return problems


def stale_since(index: Index) -> tuple[str, float] | None:
    """The oldest damaged journal and its time, if the last sync found one."""
    import json

    damaged = json.loads(index.get_meta(DAMAGED) or "{}")
    if not damaged:
        return None
    first = min(damaged, key=journal_time)
    return first, journal_time(first)

