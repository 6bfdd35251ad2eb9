"""The audit chain: events sealed by MAC, kept in the index and the store, and verified.

Every command that reads, writes, deletes, unlocks (or fails to), or changes
keys leaves events: action, path, object id, result (``ok``, ``denied`` or
``error`` with the exit code), time, host, OS user, livedata version, and a
slot for a server's request id.  A command collects its events in a
:class:`livedata_cli.audit.recorder.Recorder` (``vault.events``), which
hands them to :meth:`Trail.append` when the command ends: they are chained
in one SQLite transaction and mirrored to the store as one object.  Listing
and export are :mod:`livedata_cli.audit.report`; the tables and their SQL,
:mod:`livedata_cli.index.audit`.

Tamper evidence
    The events of one machine (one home) form a chain: event ``n`` carries
    ``HMAC-SHA256(K, canonical JSON of its fields, including n, the chain id
    and the MAC of event n-1)``, with ``K = subkey(master, vault id,
    "audit")``.  So an edited, forged, deleted, inserted or reordered event
    breaks the MAC check, the sequence check or the chain check.  The chain
    head also lives outside the index: in the store, as encrypted objects
    ``audit/<chain>/<first seq>-<last seq>`` (the journal format, whose
    authenticated encryption binds each object to its name), and in the OS
    keyring when one is usable.  A truncated tail shows as an index that ends
    before the store, a store that ends before what the index says it
    mirrored, or both ending before the head the keyring remembers.

    The keyring keeps the head of *every* chain this home has seen (its own
    and the ones it imported) in one entry, so a chain erased whole (its
    meta, rows and objects) is missed against it.  Without a keyring, each
    chain's head is also kept as a MACed *head record*, in the index
    (``meta``) and in the store (``audit-head/<chain>``, encrypted): cutting
    the same tail from the events of both is caught unless the head records
    are rolled back too (to copies saved earlier), which only the keyring
    stops.

Pending events
    Events written without the vault key carry a MAC under a *pending key*,
    a random key kept in the keyring beside the heads (made by the first
    command that has the vault key).  When they are chained, an event whose
    pending MAC does not verify, or that was written when there was no
    keyring, is chained as ``UNAUTHENTICATED`` (its detail says so and
    listings flag it): anyone who can write the index could have planted it.

Several machines
    Each home appends to its own chain; ``livedata audit`` imports the other
    chains from the store, verifies each separately and shows them
    interleaved by time.

Failed unlocks
    When a command ends without the vault key (a wrong passphrase, or a
    command that never needed the key) its events cannot be MACed yet: they
    wait, unchained, in ``audit_pending`` and are chained, in order, by the
    next command that has the key.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from livedata_cli import journal
from livedata_cli.crypto.wrap import keyed_hash, subkey
from livedata_cli.errors import LivedataError
from livedata_cli.index import audit as tables
from livedata_cli.index.core import Index
from livedata_cli.names import unicode_text

if TYPE_CHECKING:
    from livedata_cli.keys.oskeyring import KeyCache
    from livedata_cli.keys.unlock import Unlocker
    from livedata_cli.stores import ObjectStore

PREFIX = "audit/"
HEAD_PREFIX = "audit-head/"
UNAUTHENTICATED = "UNAUTHENTICATED (written without the vault key, its pending MAC missing or wrong): "
FORMAT = 1
ZERO_MAC = "0" * 64
# Fields covered by an event's MAC, besides vault, chain, seq and prev.
FIELDS = (
    "time", "action", "path", "object", "result", "code",
    "host", "user", "version", "request_id", "command", "detail",
)
# How far a moved event is looked for when its MAC fails where it stands.
_MOVE_WINDOW = 64
_NAME_RE = re.compile(r"^(\d+)-(\d+)(?:-[0-9a-f]+)?$")


class OpenVault(Protocol):
    """What the trail reads of an opened vault (:class:`livedata_cli.vault.core.Vault`)."""

    @property
    def vault_id(self) -> str: ...

    @property
    def store(self) -> ObjectStore: ...

    @property
    def index(self) -> Index: ...

    @property
    def unlocker(self) -> Unlocker: ...

    @property
    def master_key(self) -> bytes: ...  # unlocks the vault when it is not yet

    def previous_keys(self) -> list[bytes]: ...


def iso_time(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_MACED = ("vault", "chain", "seq", "prev", *FIELDS)
_encode_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical(ev: dict[str, Any]) -> bytes:
    body = {k: ev[k] for k in _MACED}
    body["v"] = FORMAT
    return _encode_canonical(body).encode()


# -- events that wait for the key ---------------------------------------------------
def _pending_account(vault_id: str) -> str:
    return f"{vault_id}/audit/pending-key"


def pending_key(cache: KeyCache | None, vault_id: str) -> bytes | None:
    """The key pending events are MACed with, from the keyring (None without one)."""
    if cache is None or not cache.enabled:
        return None
    key = cache.get(_pending_account(vault_id))
    return key if key is not None and len(key) == 32 else None


def _pending_mac(key: bytes, vault_id: str, e: dict[str, Any]) -> str:
    body = {k: v for k, v in e.items() if k != "pmac"}
    return keyed_hash(key, b"livedata/v1/audit-pending\x00" + vault_id.encode() + b"\x00" + _encode_canonical(body).encode())


def pending_authentic(key: bytes | None, vault_id: str, e: dict[str, Any]) -> bool:
    """Whether a pending event carries a valid MAC under the pending key."""
    if key is None or not isinstance(e.get("pmac"), str) or not isinstance(e.get("pid"), str):
        return False
    return hmac.compare_digest(_pending_mac(key, vault_id, e), e["pmac"])


def add_pending(index: Index, vault_id: str, events: list[dict[str, Any]], cache: KeyCache | None = None) -> None:
    """Keep events that cannot be chained yet (no vault key) until the next unlock,
    each MACed under the pending key when the keyring holds one."""
    key = pending_key(cache, vault_id)
    rows = []
    for e in events:
        e = {**e, "pid": secrets.token_hex(8)}
        if key is not None:
            e["pmac"] = _pending_mac(key, vault_id, e)
        rows.append(json.dumps(e, sort_keys=True))
    with index.write() as db:
        tables.add_pending(db, vault_id, rows)


# -- verification results ------------------------------------------------------
@dataclass
class Problem:
    """The first thing wrong in one place, and which check caught it."""

    chain: str
    seq: int | None
    check: str
    where: str  # "index", "store" or "index and store"
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"chain": self.chain, "seq": self.seq, "check": self.check, "where": self.where, "message": self.message}


@dataclass
class ChainReport:
    chain: str
    this_machine: bool
    events: int = 0
    head_seq: int = 0
    head_mac: str = ""
    host: str = ""
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "this_machine": self.this_machine,
            "host": self.host,
            "events": self.events,
            "head": {"seq": self.head_seq, "mac": self.head_mac},
            "intact": not self.problems,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass
class _Walk:
    count: int = 0
    head_seq: int = 0
    head_mac: str = ZERO_MAC
    problem: Problem | None = None


# -- the trail of one vault -------------------------------------------------------
class Trail:
    """The audit events of one vault in this index, and their mirror in the store."""

    def __init__(
        self, index: Index, store: ObjectStore, vault_id: str, master: bytes, cache: KeyCache | None = None
    ) -> None:
        self.index = index
        self.store = store
        self.vault_id = vault_id
        self.master = master
        self.cache = cache
        self._key = subkey(master, vault_id, "audit")
        self.previous: list[bytes] = []  # master keys before 'keys rotate': older events verify under them

    @staticmethod
    def of(vault: OpenVault) -> Trail:
        """The trail of an opened vault (unlocking it)."""
        trail = Trail(vault.index, vault.store, vault.vault_id, vault.master_key, vault.unlocker.cache)
        trail.previous = vault.previous_keys()
        return trail

    # -- chain identity ------------------------------------------------------------
    def own_chain(self) -> str | None:
        """This machine's chain id (made by its first event)."""
        return self.index.get_meta(f"audit_chain:{self.vault_id}")

    def mac(self, ev: dict[str, Any]) -> str:
        return keyed_hash(self._key, b"livedata/v1/audit\x00" + _canonical(ev))

    def _decode(self, name: str, blob: bytes) -> list[dict[str, Any]]:
        """An audit object, under the vault key or one it had before 'keys rotate'."""
        for master in [self.master, *self.previous]:
            try:
                return journal.decode(master, self.vault_id, name, blob)
            except LivedataError:
                if master is (self.previous or [self.master])[-1]:
                    raise
        raise AssertionError("unreachable")

    def _mac_ok(self, ev: dict[str, Any]) -> bool:
        try:
            body = b"livedata/v1/audit\x00" + _canonical(ev)
            keys = [self._key, *(subkey(m, self.vault_id, "audit") for m in self.previous)]
            return any(hmac.compare_digest(keyed_hash(k, body), str(ev["mac"])) for k in keys)
        except (KeyError, TypeError, ValueError):
            return False

    # -- appending ---------------------------------------------------------------
    def append(self, new: list[dict[str, Any]]) -> None:
        """Chain the pending events and these, in one transaction; then mirror them."""
        head: tuple[int, str] | None = None
        with self.index.write() as db:
            # Created under the write lock: two first commands agree on one chain.
            chain = tables.own_chain(db, self.vault_id, secrets.token_hex(8))
            pending = tables.pending(db, self.vault_id)
            todo = self._checked_pending([json.loads(r[1]) for r in pending]) + new
            if todo:
                seq, prev = tables.head(db, self.vault_id, chain) or (0, ZERO_MAC)
                rows = []
                for e in todo:
                    seq += 1
                    # unicode_text: an event kept pending by an older livedata may hold any bytes
                    fields = {k: unicode_text(v) if isinstance(v := e.get(k, ""), str) else v for k in FIELDS}
                    ev = {**fields, "vault": self.vault_id, "chain": chain, "seq": seq, "prev": prev}
                    ev["code"], ev["time"] = int(ev["code"] or 0), int(ev["time"] or 0)
                    ev["mac"] = prev = self.mac(ev)
                    rows.append(ev)
                tables.add_events(db, rows)
                if pending:
                    tables.drop_pending(db, self.vault_id, pending[-1][0])
                head = (seq, prev)
                tables.put_meta(db, self._head_meta(chain), json.dumps(self._head_record(chain, seq, prev)))
        if head is not None:
            self._remember_head(chain, *head)
        try:
            self.mirror(rows if head is not None else None)
        except (LivedataError, OSError) as e:
            detail = e.message if isinstance(e, LivedataError) else str(e)
            raise LivedataError(
                f"events kept in the index; their store copy waits for the next command ({detail})"
            ) from None

    def _checked_pending(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pending events as they are chained: the ones without a valid pending MAC
        (or seen twice) are marked unauthenticated."""
        key = pending_key(self.cache, self.vault_id)
        if key is None and self.cache is not None and self.cache.enabled:
            # Made now, for the next command that lacks the vault key; no event
            # waiting now can hold a MAC under it.
            self.cache.put(_pending_account(self.vault_id), secrets.token_bytes(32))
        seen: set[str] = set()
        out = []
        for e in events:
            ok = pending_authentic(key, self.vault_id, e) and str(e["pid"]) not in seen
            seen.add(str(e.get("pid")))
            if not ok:
                e = {**e, "detail": (UNAUTHENTICATED + str(e.get("detail", "")))[:400]}
            out.append(e)
        return out

    # -- head records (the chain's end, MACed, in the index and the store) ----------
    def _head_meta(self, chain: str) -> str:
        return f"audit_head:{self.vault_id}:{chain}"

    def _head_tag(self, chain: str, seq: int, mac: str) -> str:
        return keyed_hash(self._key, f"livedata/v1/audit-head\x00{self.vault_id}\x00{chain}\x00{seq}\x00{mac}".encode())

    def _head_record(self, chain: str, seq: int, mac: str) -> dict[str, Any]:
        return {"chain": chain, "seq": seq, "mac": mac, "tag": self._head_tag(chain, seq, mac)}

    def _head_ok(self, chain: str, rec: Any) -> tuple[int, str] | None:
        try:
            seq, mac = int(rec["seq"]), str(rec["mac"])
            if rec["chain"] == chain and hmac.compare_digest(self._head_tag(chain, seq, mac), str(rec["tag"])):
                return seq, mac
        except (KeyError, TypeError, ValueError):
            pass
        return None

    def head_records(self) -> dict[str, list[tuple[str, tuple[int, str] | None]]]:
        """Every chain's head records: (where, (seq, mac) or None when it fails its MAC)."""
        out: dict[str, list[tuple[str, tuple[int, str] | None]]] = {}
        for name in self.store.list(HEAD_PREFIX):
            chain = name[len(HEAD_PREFIX):]
            if not chain or "/" in chain:
                continue
            try:
                (rec,) = journal.decode(self.master, self.vault_id, name, self.store.get_bytes(name))
            except (LivedataError, OSError, ValueError):
                rec = None
            out.setdefault(chain, []).append(("store", self._head_ok(chain, rec)))
        prefix = f"audit_head:{self.vault_id}:"
        for key, value in tables.meta_from(self.index.db, prefix):
            chain = key[len(prefix):]
            try:
                rec = json.loads(value)
            except ValueError:
                rec = None
            out.setdefault(chain, []).append(("index", self._head_ok(chain, rec)))
        return out

    def mirror(self, fresh: list[dict[str, Any]] | None = None) -> None:
        """Write this machine's events the store lacks as one encrypted object.
        ``fresh``: the events just chained, which are all it lacks unless an
        earlier copy failed (then they are read back from the index)."""
        chain = self.own_chain()
        if chain is None:
            return
        with self.index.write() as db:
            oldest = tables.oldest_unmirrored(db, self.vault_id, chain)
            if oldest is None:
                return
            if fresh and fresh[0]["chain"] == chain and fresh[0]["seq"] == oldest:
                events = fresh
            else:
                events = [_row_event(r) for r in tables.unmirrored(db, self.vault_id, chain)]
            first, last = int(events[0]["seq"]), int(events[-1]["seq"])
            name = f"{PREFIX}{chain}/{first:012d}-{last:012d}"
            try:
                self.store.put_bytes(name, journal.encode(self.master, self.vault_id, name, events), exclusive=True)
            except FileExistsError:
                # The same range exists: another process mirrored it first, or the
                # index was rolled back.  Keep both: verify tells them apart.
                name = f"{name}-{secrets.token_hex(4)}"
                self.store.put_bytes(name, journal.encode(self.master, self.vault_id, name, events), exclusive=True)
            tables.mark_mirrored(db, self.vault_id, chain, first, last, name)
            # The head record goes after the events it names: a reader that reads the
            # head first never finds it ahead of the objects it lists next.
            head = f"{HEAD_PREFIX}{chain}"
            top = events[-1]
            record = self._head_record(chain, int(top["seq"]), str(top["mac"]))
            self.store.put_bytes(head, journal.encode(self.master, self.vault_id, head, [record]))

    def _remember_head(self, chain: str, seq: int, mac: str) -> None:
        """Keep the chain's head in the keyring's set of every chain this home has seen."""
        if self.cache is None or not self.cache.enabled:
            return
        heads = self._keyring_set()
        if chain in heads and heads[chain][0] > seq:
            return
        heads[chain] = (seq, mac)
        self.cache.put(self._set_account(), json.dumps({c: [q, m] for c, (q, m) in heads.items()}).encode())

    def _keyring_set(self) -> dict[str, tuple[int, str]]:
        if self.cache is None or not self.cache.enabled:
            return {}
        raw = self.cache.get(self._set_account())
        out: dict[str, tuple[int, str]] = {}
        try:
            for chain, (seq, mac) in json.loads(raw or b"{}").items():
                out[str(chain)] = (int(seq), str(mac))
        except (ValueError, TypeError, AttributeError):
            return {}
        return out

    def keyring_heads(self) -> dict[str, tuple[int, str]]:
        """The heads the keyring remembers: every chain's, and this home's own from
        before the set existed (an entry of its own)."""
        heads = self._keyring_set()
        own = self.own_chain()
        if own is not None and own not in heads:
            legacy = self._keyring_head(own)
            if legacy is not None:
                heads[own] = legacy
        return heads

    def _keyring_head(self, chain: str) -> tuple[int, str] | None:
        if self.cache is None or not self.cache.enabled:
            return None
        raw = self.cache.get(self._head_account(chain))
        if raw is None or len(raw) != 40:
            return None
        return int.from_bytes(raw[:8], "big"), raw[8:].hex()

    def _head_account(self, chain: str) -> str:
        return f"{self.vault_id}/audit/{chain}"

    def _set_account(self) -> str:
        return f"{self.vault_id}/audit/chains"

    # -- other machines -------------------------------------------------------------
    def store_objects(self) -> dict[str, list[str]]:
        """The store's audit objects by chain, each list in sequence order."""
        out: dict[str, list[str]] = {}
        for name in self.store.list(PREFIX):
            parts = name.split("/")
            if len(parts) == 3:
                out.setdefault(parts[1], []).append(name)
            elif len(parts) == 2:  # a folder-like listing: one level per call
                out.setdefault(parts[1], []).extend(self.store.list(name + "/"))
        return {c: sorted(names, key=_name_order) for c, names in out.items()}

    def import_chains(self) -> int:
        """Copy other machines' events from the store into this index; returns how many."""
        own = self.own_chain()
        done = tables.objects(self.index.db)
        added = 0
        for chain, names in self.store_objects().items():
            if chain == own:
                continue
            for name in names:
                if name in done:
                    continue
                try:
                    events = self._decode(name, self.store.get_bytes(name))
                except (LivedataError, OSError):
                    continue  # 'audit verify' says what is wrong with it
                good = [e for e in events if e.get("chain") == chain and e.get("vault") == self.vault_id and self._mac_ok(e)]
                with self.index.write() as db:
                    added += tables.add_events(db, [
                        {**{k: e.get(k, "") for k in FIELDS}, **{k: e[k] for k in ("vault", "chain", "seq", "prev", "mac")}}
                        for e in good
                    ], mirrored=True)
                    tables.add_object(db, name)
                if good:
                    top = max(good, key=lambda e: int(e["seq"]))
                    self._remember_head(chain, int(top["seq"]), str(top["mac"]))
        return added

    def pending_count(self) -> int:
        return tables.pending_count(self.index.db, self.vault_id)

    # -- verifying -----------------------------------------------------------------
    def verify(self) -> dict[str, Any]:
        """Check every chain in the index and in the store; see the module docstring."""
        own = self.own_chain()
        # The store is read before the index: whatever a listing shows was
        # committed to its index first, so a concurrent command cannot make the
        # store look ahead of the index.
        heads = self.head_records()  # before the objects: a head is written after its objects
        objects = self.store_objects()
        store_side = {c: self._load_store_chain(c, names) for c, names in objects.items()}
        remembered = self.keyring_heads()
        index_side = {
            c: [_row_event(r) | {"mirrored": int(r["mirrored"])} for r in rows]
            for c, rows in tables.snapshot(self.index.db, self.vault_id).items()
        }
        reports = []
        for chain in sorted(set(index_side) | set(store_side) | set(remembered), key=lambda c: (c != own, c)):
            report = self._verify_chain(chain, chain == own, index_side.get(chain, []), store_side.get(chain),
                                        remembered.get(chain), heads.get(chain, []))
            reports.append(report)
        problems = sorted((p for r in reports for p in r.problems), key=lambda p: (p.chain != own, p.chain))

        own_report = next((r for r in reports if r.this_machine), None)
        return {
            "intact": not problems,
            "events": sum(r.events for r in reports),
            "chains": [r.to_json() for r in reports],
            "head": own_report.head_mac if own_report else "",
            "pending": self.pending_count(),
            "problems": [p.to_json() for p in problems],
        }

    def _load_store_chain(self, chain: str, names: list[str]) -> tuple[dict[int, dict[str, Any]], list[Problem]]:
        by_seq: dict[int, dict[str, Any]] = {}
        problems: list[Problem] = []
        for name in names:
            first = _name_first(name)
            try:
                events = self._decode(name, self.store.get_bytes(name))
            except (LivedataError, OSError):
                moved = self._decodes_as(name, names)
                if moved:
                    msg = (f"store object {name} holds the events of {moved}: "
                           "objects were copied, renamed or reordered")
                else:
                    msg = f"store object {name} fails authentication: edited, forged or inserted"
                problems.append(Problem(chain, first, "store authentication check", "store", msg))
                continue
            lo, hi = _name_range(name)
            for e in events:
                seq = e.get("seq")
                if e.get("chain") != chain or not isinstance(seq, int) or not lo <= seq <= hi:
                    problems.append(Problem(chain, first, "store authentication check", "store",
                                            f"store object {name} holds events that do not belong under its name"))
                    break
                other = by_seq.get(seq)
                if other is not None and other.get("mac") != e.get("mac"):
                    problems.append(Problem(chain, seq, "sequence check", "store",
                                            "the store holds two different versions of it: the chain forked "
                                            "(the index was rolled back, or events were forged)"))
                by_seq.setdefault(seq, e)
        return by_seq, problems

    def _decodes_as(self, name: str, names: list[str]) -> str | None:
        """The other name an object opens under, if it was moved or copied."""
        try:
            blob = self.store.get_bytes(name)
        except (LivedataError, OSError):
            return None
        for other in names[:200]:
            if other == name:
                continue
            try:
                journal.decode(self.master, self.vault_id, other, blob)
                return other
            except LivedataError:
                continue
        return None

    def _walk(self, chain: str, events: list[dict[str, Any]], where: str) -> _Walk:
        """The MAC, sequence and chain checks over events sorted by seq."""
        w = _Walk()
        expected, prev = 1, ZERO_MAC
        for e in events:
            seq = e.get("seq")
            if not self._mac_ok(e):
                moved = self._mac_fits_elsewhere(e)
                if moved is not None:
                    msg = (f"it is event #{moved} moved or copied here (its MAC fits position #{moved}): "
                           "events were reordered, renumbered or duplicated")
                else:
                    msg = "its MAC does not match its content: edited or forged"
                w.problem = Problem(chain, _as_int(seq), "MAC check", where, msg)
                return w
            assert isinstance(seq, int)
            if seq != expected:
                if seq > expected:
                    more = f" (and up to #{seq - 1})" if seq > expected + 1 else ""
                    w.problem = Problem(chain, expected, "sequence check", where,
                                        f"missing from the {where}{more}: deleted")
                else:
                    w.problem = Problem(chain, seq, "sequence check", where, "it appears twice: inserted")
                return w
            if e.get("prev") != prev:
                w.problem = Problem(chain, seq, "chain check", where,
                                    f"it does not follow event #{seq - 1}: "
                                    "an event before it was inserted, deleted or reordered")
                return w
            expected, prev = seq + 1, str(e["mac"])
            w.count, w.head_seq, w.head_mac = w.count + 1, seq, prev
        return w

    def _mac_fits_elsewhere(self, e: dict[str, Any]) -> int | None:
        seq = _as_int(e.get("seq"))
        if seq is None:
            return None
        for other in range(max(1, seq - _MOVE_WINDOW), seq + _MOVE_WINDOW + 1):
            if other != seq and self._mac_ok({**e, "seq": other}):
                return other
        return None

    def _verify_chain(
        self,
        chain: str,
        this_machine: bool,
        idx: list[dict[str, Any]],
        store: tuple[dict[int, dict[str, Any]], list[Problem]] | None,
        remembered: tuple[int, str] | None = None,
        heads: list[tuple[str, tuple[int, str] | None]] | None = None,
    ) -> ChainReport:
        report = ChainReport(chain, this_machine, host=str(idx[-1]["host"]) if idx else "")
        st_by_seq, st_problems = store if store is not None else ({}, [])
        st_events = [st_by_seq[s] for s in sorted(st_by_seq)]
        if st_events and not report.host:
            report.host = str(st_events[-1].get("host", ""))
        iw = self._walk(chain, idx, "index")
        sw = self._walk(chain, st_events, "store")
        problems = st_problems + [p for p in (iw.problem, sw.problem) if p]
        # Both copies must agree wherever both hold an event.
        idx_by_seq = {e["seq"]: e for e in idx if isinstance(e.get("seq"), int)}
        for seq in sorted(set(idx_by_seq) & set(st_by_seq)):
            if idx_by_seq[seq]["mac"] != st_by_seq[seq].get("mac"):
                problems.append(Problem(chain, seq, "cross check", "index and store",
                                        "it differs between the index and the store: "
                                        "one was edited, or the chain forked"))
                break
        i_head = iw.head_seq if iw.problem is None else None
        s_head = max(st_by_seq, default=0)
        if i_head is not None and sw.problem is None and not st_problems:
            if s_head > i_head and this_machine:
                problems.append(Problem(chain, i_head + 1, "head check", "index",
                                        f"the index ends before it (at #{i_head}) but the store holds events "
                                        f"up to #{s_head}: the index's tail was truncated"))
            if i_head > s_head:
                mirrored = max((e["seq"] for e in idx if e.get("mirrored")), default=0)
                if mirrored > s_head and self._store_lacks(chain, s_head):
                    problems.append(Problem(chain, s_head + 1, "head check", "store",
                                            f"the store's copy ends before it (at #{s_head}) but the index says "
                                            f"events up to #{mirrored} were mirrored: the store's tail was truncated"))
        top = max(i_head or 0, s_head)
        if remembered is not None:
            k_seq, k_mac = remembered
            if k_seq > top and top == 0:
                problems.append(Problem(chain, None, "keyring head check", "index and store",
                                        f"the keyring remembers this chain up to #{k_seq}, but neither the index "
                                        "nor the store holds any of it: the whole chain was erased"))
            elif k_seq > top:
                problems.append(Problem(chain, top + 1, "keyring head check", "index and store",
                                        f"the keyring remembers head #{k_seq}, but the index and the store end "
                                        f"at #{top}: the tail was truncated in both"))
            else:
                held = idx_by_seq.get(k_seq) or st_by_seq.get(k_seq)
                if held is not None and held.get("mac") != k_mac:
                    problems.append(Problem(chain, k_seq, "keyring head check", "index and store",
                                            "it differs from the head the keyring remembers"))
        present = max(max(idx_by_seq, default=0), s_head)
        for where, head in heads or []:
            if head is None:
                problems.append(Problem(chain, None, "head record check", where,
                                        f"the chain's head record in the {where} fails authentication: "
                                        "edited or forged"))
                continue
            h_seq, h_mac = head
            if h_seq > present:
                problems.append(Problem(chain, present + 1, "head record check", "index and store",
                                        f"the head record in the {where} says the chain reaches #{h_seq}, but the "
                                        f"index and the store end at #{present}: the tail was cut from both"))
            else:
                held = idx_by_seq.get(h_seq) or st_by_seq.get(h_seq)
                if held is not None and held.get("mac") != h_mac:
                    problems.append(Problem(chain, h_seq, "head record check", where,
                                            f"it differs from the head record in the {where}"))
        report.problems = sorted(problems, key=_problem_order)
        best = iw if iw.count >= sw.count else sw
        report.events = max(iw.count, sw.count, len(idx_by_seq.keys() | st_by_seq.keys()))
        report.head_seq, report.head_mac = best.head_seq, best.head_mac if best.count else ""
        for p in report.problems:
            # Described from the copy that was not caught out, when there is one.
            copies = (st_by_seq, idx_by_seq) if p.where == "index" else (idx_by_seq, st_by_seq)
            p.message = f"{self.describe(chain, p.seq, *copies)}: {p.message}"
        return report

    def _store_lacks(self, chain: str, s_head: int) -> bool:
        """Whether the store still ends at ``s_head`` on a fresh listing (an object
        mirrored while verify ran is not a truncation)."""
        names = self.store_objects().get(chain, [])
        return max((_name_range(n)[1] for n in names), default=0) <= s_head

    def describe(
        self, chain: str, seq: int | None, first: dict[int, dict[str, Any]], second: dict[int, dict[str, Any]]
    ) -> str:
        """``event #57 of chain 1a2b… (2026-11-25 17:05:53 upload a.txt)``."""
        if seq is None:
            return f"chain {chain}"
        e = first.get(seq) or second.get(seq)
        if e is None:
            return f"event #{seq} of chain {chain}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((_as_int(e.get("time")) or 0) / 1e6))
        what = " ".join(str(x) for x in (e.get("action"), e.get("path")) if x)
        return f"event #{seq} of chain {chain} ({when} {what})"


# -- helpers -------------------------------------------------------------------
_CHECKS = (
    "store authentication check", "MAC check", "sequence check", "chain check",
    "head check", "keyring head check", "head record check", "cross check",
)


def _problem_order(p: Problem) -> tuple[int, int]:
    """Lowest event first; at one event, the check that says most about it."""
    rank = _CHECKS.index(p.check) if p.check in _CHECKS else len(_CHECKS)
    return (p.seq if p.seq is not None else 0, rank)


def _row_event(r: sqlite3.Row) -> dict[str, Any]:
    ev = {k: r[k] for k in ("vault", "chain", "seq", "prev", "mac", *FIELDS)}
    return ev


def _as_int(v: Any, default: int | None = None) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _name_range(name: str) -> tuple[int, int]:
    m = _NAME_RE.match(name.rsplit("/", 1)[-1])
    return (int(m.group(1)), int(m.group(2))) if m else (0, -1)


def _name_first(name: str) -> int | None:
    lo, hi = _name_range(name)
    return lo if hi >= 0 else None


def _name_order(name: str) -> tuple[int, str]:
    return (_name_range(name)[0], name)


