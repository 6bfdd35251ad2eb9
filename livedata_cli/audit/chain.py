"""The audit trail: who did what, when, from where, and whether it worked.

Every command that reads, writes, deletes, unlocks (or fails to), or changes
keys leaves events: action, path, object id, result (``ok``, ``denied`` or
``error`` with the exit code), time, host, OS user, livedata version, and a
slot for a server's request id.  A command collects its events in a
:class:`Recorder` (``vault.events``); the CLI's ``main()`` hands them to
:func:`finish` when the command ends, which writes them all in one SQLite
transaction and mirrors them to the store as one object.

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

import getpass
import hmac
import json
import os
import re
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from livedata_cli import __version__, journal, settings
from livedata_cli.crypto.wrap import keyed_hash, subkey
from livedata_cli.errors import ExitCode, LivedataError
from livedata_cli.index.core import Index

if TYPE_CHECKING:
    from livedata_cli.keys.slots import KeyCache
    from livedata_cli.stores import ObjectStore
    from livedata_cli.vault.core import Vault

PREFIX = "audit/"
HEAD_PREFIX = "audit-head/"
UNAUTHENTICATED = "UNAUTHENTICATED (written without the vault key, its pending MAC missing or wrong): "
FORMAT = 1
ZERO_MAC = "0" * 64
# Bursts of refused unlocks, and mass deletions, are flagged in listings.
BURST_FAILURES, BURST_WINDOW = 5, 600.0
MASS_DELETES, MASS_WINDOW = 100, 3600.0
DELETE_ACTIONS = ("rm", "purge")
# Fields covered by an event's MAC, besides vault, chain, seq and prev.
FIELDS = (
    "time", "action", "path", "object", "result", "code",
    "host", "user", "version", "request_id", "command", "detail",
)
# How far a moved event is looked for when its MAC fails where it stands.
_MOVE_WINDOW = 64
_NAME_RE = re.compile(r"^(\d+)-(\d+)(?:-[0-9a-f]+)?$")


# -- one event ---------------------------------------------------------------
def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def now_us() -> int:
    return time.time_ns() // 1000


def result_of(code: int) -> str:
    """``ok``, ``denied`` (authentication or a limit) or ``error``, from an exit code."""
    if code == 0:
        return "ok"
    if code in (ExitCode.AUTH, ExitCode.REFUSED):
        return "denied"
    return "error"


def iso_time(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_MACED = ("vault", "chain", "seq", "prev", *FIELDS)
_encode_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical(ev: dict[str, Any]) -> bytes:
    body = {k: ev[k] for k in _MACED}
    body["v"] = FORMAT
    return _encode_canonical(body).encode()


# -- what one command did ------------------------------------------------------
class Recorder:
    """The events of the running command, collected in memory until it ends."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.vault: Vault | None = None
        self.command = secrets.token_hex(8)
        self.name = ""  # the command (``keys passwd``), when the CLI knows it
        self.target = ""  # what the command was pointed at (REF or paths)
        self.reads = True  # False while verifying: reading to check is not a download

    def add(
        self,
        action: str,
        path: str = "",
        *,
        object: str = "",
        result: str = "ok",
        code: int = 0,
        detail: str = "",
        at: int | None = None,
    ) -> None:
        self.events.append(self.event(action, path, object=object, result=result, code=code, detail=detail, at=at))

    def event(
        self,
        action: str,
        path: str = "",
        *,
        object: str = "",
        result: str = "ok",
        code: int = 0,
        detail: str = "",
        at: int | None = None,
    ) -> dict[str, Any]:
        return {
            "time": now_us() if at is None else at,
            "action": action,
            "path": path,
            "object": object,
            "result": result,
            "code": int(code),
            "host": _HOST,
            "user": _USER,
            "version": __version__,
            "request_id": "",
            "command": self.command,
            "detail": detail,
        }

    def read(self, path: str, obj: str) -> None:
        """Plaintext of a stored version was released."""
        if self.reads:
            self.add("download", path, object=obj)

    def failed(self, action: str, path: str, error: BaseException, obj: str = "") -> None:
        code = int(error.exit_code) if isinstance(error, LivedataError) else int(ExitCode.UNEXPECTED)
        message = error.message if isinstance(error, LivedataError) else str(error)
        self.add(action, path, object=obj, result=result_of(code), code=code, detail=message[:200])

    def journal(self, records: Iterable[dict[str, Any]], index: Index) -> None:
        """Events for the metadata records a command is about to write."""
        for rec in records:
            kind = str(rec.get("t", ""))
            if kind == "put":
                self.add("upload", str(rec.get("path", "")), object=str(rec.get("object") or ""))
            elif kind in ("rm", "restore"):
                self.add(kind, str(rec.get("path", "")))
            elif kind == "purge":
                seen: set[tuple[str, str]] = set()
                for vid in rec.get("vids", []):
                    row = index.db.execute("SELECT path, object FROM versions WHERE vid = ?", (vid,)).fetchone()
                    where = (str(row[0]), str(row[1] or "")) if row else ("", "")
                    if where not in seen:
                        seen.add(where)
                        self.add("purge", where[0], object=where[1])
            elif kind in ("tag", "note", "file-password"):
                row = index.db.execute(
                    "SELECT path, object FROM versions WHERE vid = ?", (rec.get("vid"),)
                ).fetchone()
                detail = ""
                if kind == "tag":
                    detail = " ".join([*(f"+{t}" for t in rec.get("add", [])), *(f"-{t}" for t in rec.get("remove", []))])
                self.add(kind, str(row[0]) if row else "", object=str(row[1] or "") if row else "", detail=detail)
            else:
                self.add(kind or "record")


_HOST = _host()
_USER = _user()
_current = Recorder()


def attach(vault: Vault) -> Recorder:
    """The running command's recorder, now knowing the vault it works on.

    A command works on one vault; a second vault opened in the same process
    (library use) starts a fresh recorder, so events never pile up unbounded.
    """
    global _current
    if _current.vault is not None and _current.vault is not vault:
        _current = Recorder()
    _current.vault = vault
    return _current


def current() -> Recorder:
    return _current


def _take() -> Recorder:
    global _current
    rec, _current = _current, Recorder()
    return rec


# -- the end of a command ------------------------------------------------------
def finish(command: str, code: int, *, audited: bool, vault_less: bool = False) -> None:
    """Record what the command that just ended did.

    ``audited`` is False for commands that only look (``ls``, ``audit``):
    they leave no event of their own, but failed unlocks are kept all the
    same.  A command that never opened the vault (``lock``) records its event
    pending, when ``vault_less``.
    """
    rec = _take()
    vault = rec.vault
    events: list[dict[str, Any]] = []
    if vault is not None:
        for reason in vault.unlocker.failures:
            events.append(rec.event("unlock", result="denied", code=int(ExitCode.AUTH), detail=reason))
    if audited:
        events += rec.events
        explained = code in (0, int(ExitCode.PARTIAL)) or any(e["code"] == code for e in rec.events)
        if not rec.events or not explained:
            events.append(rec.event(command, rec.target, result=result_of(code), code=code))
    if not events:
        return
    from livedata_cli.index import at_rest

    if at_rest.is_locked(settings.home() / settings.INDEX_FILE):
        return  # 'lock --index': no index to keep them in until the next unlock
    if vault is None:
        if not vault_less or not settings.VaultSettings.exists():
            return
        vault_id = settings.VaultSettings.load().vault_id
        index = Index(settings.home() / settings.INDEX_FILE)
        try:
            from livedata_cli.keys.slots import KeyCache

            add_pending(index, vault_id, events, KeyCache(True))
        finally:
            index.close()
        return
    index = Index(settings.home() / settings.INDEX_FILE)
    try:
        master = vault._master
        if master is None:
            add_pending(index, vault.vault_id, events, vault.unlocker.cache)
            return
        Trail(index, vault.store, vault.vault_id, master, vault.unlocker.cache).append(events)
    finally:
        index.close()


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
        rows.append((vault_id, json.dumps(e, sort_keys=True)))
    with index.write() as db:
        db.executemany("INSERT INTO audit_pending (vault, event) VALUES (?, ?)", rows)


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
    def of(vault: Vault) -> Trail:
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
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                (f"audit_chain:{self.vault_id}", secrets.token_hex(8)),
            )
            chain = str(db.execute("SELECT value FROM meta WHERE key = ?", (f"audit_chain:{self.vault_id}",)).fetchone()[0])
            pending = db.execute(
                "SELECT id, event FROM audit_pending WHERE vault = ? ORDER BY id", (self.vault_id,)
            ).fetchall()
            todo = self._checked_pending([json.loads(r[1]) for r in pending]) + new
            if todo:
                row = db.execute(
                    "SELECT seq, mac FROM audit_events WHERE vault = ? AND chain = ? ORDER BY seq DESC LIMIT 1",
                    (self.vault_id, chain),
                ).fetchone()
                seq, prev = (int(row[0]), str(row[1])) if row else (0, ZERO_MAC)
                rows = []
                for e in todo:
                    seq += 1
                    ev = {**{k: e.get(k, "") for k in FIELDS}, "vault": self.vault_id, "chain": chain, "seq": seq, "prev": prev}
                    ev["code"], ev["time"] = int(ev["code"] or 0), int(ev["time"] or 0)
                    ev["mac"] = prev = self.mac(ev)
                    rows.append(ev)
                db.executemany(
                    f"INSERT INTO audit_events (vault, chain, seq, prev, mac, {', '.join(FIELDS)}) "
                    f"VALUES (:vault, :chain, :seq, :prev, :mac, {', '.join(':' + f for f in FIELDS)})",
                    rows,
                )
                if pending:
                    db.execute(
                        "DELETE FROM audit_pending WHERE vault = ? AND id <= ?", (self.vault_id, pending[-1][0])
                    )
                head = (seq, prev)
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (self._head_meta(chain), json.dumps(self._head_record(chain, seq, prev))),
                )
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
        for key, value in self.index.db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff")
        ):
            chain = str(key)[len(prefix):]
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
            oldest = db.execute(
                "SELECT MIN(seq) FROM audit_events WHERE vault = ? AND chain = ? AND mirrored = 0",
                (self.vault_id, chain),
            ).fetchone()[0]
            if oldest is None:
                return
            if fresh and fresh[0]["chain"] == chain and fresh[0]["seq"] == oldest:
                events = fresh
            else:
                rows = db.execute(
                    "SELECT * FROM audit_events WHERE vault = ? AND chain = ? AND mirrored = 0 ORDER BY seq",
                    (self.vault_id, chain),
                ).fetchall()
                events = [_row_event(r) for r in rows]
            first, last = int(events[0]["seq"]), int(events[-1]["seq"])
            name = f"{PREFIX}{chain}/{first:012d}-{last:012d}"
            try:
                self.store.put_bytes(name, journal.encode(self.master, self.vault_id, name, events), exclusive=True)
            except FileExistsError:
                # The same range exists: another process mirrored it first, or the
                # index was rolled back.  Keep both: verify tells them apart.
                name = f"{name}-{secrets.token_hex(4)}"
                self.store.put_bytes(name, journal.encode(self.master, self.vault_id, name, events), exclusive=True)
            db.execute(
                "UPDATE audit_events SET mirrored = 1 WHERE vault = ? AND chain = ? AND seq BETWEEN ? AND ?",
                (self.vault_id, chain, first, last),
            )
            db.execute("INSERT OR IGNORE INTO audit_objects (name) VALUES (?)", (name,))
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
        done = {r[0] for r in self.index.db.execute("SELECT name FROM audit_objects")}
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
                    before = db.total_changes
                    db.executemany(
                        f"INSERT OR IGNORE INTO audit_events (vault, chain, seq, prev, mac, mirrored, {', '.join(FIELDS)}) "
                        f"VALUES (:vault, :chain, :seq, :prev, :mac, 1, {', '.join(':' + f for f in FIELDS)})",
                        [{**{k: e.get(k, "") for k in FIELDS}, **{k: e[k] for k in ("vault", "chain", "seq", "prev", "mac")}} for e in good],
                    )
                    added += db.total_changes - before
                    db.execute("INSERT OR IGNORE INTO audit_objects (name) VALUES (?)", (name,))
                if good:
                    top = max(good, key=lambda e: int(e["seq"]))
                    self._remember_head(chain, int(top["seq"]), str(top["mac"]))
        return added

    # -- reading -------------------------------------------------------------------
    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actions: list[str] | None = None,
        path: str | None = None,
        result: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Events of every chain (and unchained ones), filtered, with their flags."""
        where, args = ["vault = ?"], [self.vault_id]
        if since is not None:
            where.append("time >= ?")
            args.append(int(since * 1e6))  # type: ignore[arg-type]
        if until is not None:
            where.append("time <= ?")
            args.append(int(until * 1e6))  # type: ignore[arg-type]
        if actions:
            where.append(f"action IN ({','.join('?' * len(actions))})")
            args += actions
        if path is not None:
            where.append("path GLOB ?")
            args.append(path)
        if result is not None:
            where.append("result = ?")
            args.append(result)
        order = "DESC" if newest_first else "ASC"
        rows = self.index.db.execute(
            f"SELECT * FROM audit_events WHERE {' AND '.join(where)} "
            f"ORDER BY time {order}, chain {order}, seq {order}" + (f" LIMIT {int(limit)}" if limit else ""),
            args,
        ).fetchall()
        out = [_row_event(r) for r in rows]
        key = pending_key(self.cache, self.vault_id)
        for r in self.index.db.execute("SELECT id, event FROM audit_pending WHERE vault = ?", (self.vault_id,)):
            e = json.loads(r[1])
            authentic = pending_authentic(key, self.vault_id, e)
            e = {k: v for k, v in e.items() if k not in ("pid", "pmac")}
            e.update(vault=self.vault_id, chain="", seq=None, prev="", mac="", unauthenticated=not authentic)
            if _matches(e, since, until, actions, path, result):
                out.append(e)
        flags = self.flags()
        for e in out:
            mine = set(flags.get((e["chain"], e["seq"]), ()))
            if e.pop("unauthenticated", False) or str(e.get("detail", "")).startswith(UNAUTHENTICATED):
                mine.add("unauthenticated")
            e["flags"] = sorted(mine)
        out.sort(key=lambda e: (e["time"], e["chain"], e["seq"] or 0), reverse=newest_first)
        return out[:limit] if limit else out

    def flags(self) -> dict[tuple[str, int | None], set[str]]:
        """``failure-burst``: at least BURST_FAILURES refused unlocks within BURST_WINDOW;
        ``mass-delete``: at least MASS_DELETES removals in one command or within MASS_WINDOW."""
        out: dict[tuple[str, int | None], set[str]] = {}
        fails = self.index.db.execute(
            "SELECT chain, seq, time FROM audit_events WHERE vault = ? AND action = 'unlock' AND result = 'denied'",
            (self.vault_id,),
        ).fetchall()
        fails_pending = [
            ("", None, e["time"])
            for e in (json.loads(r[0]) for r in self.index.db.execute(
                "SELECT event FROM audit_pending WHERE vault = ?", (self.vault_id,)))
            if e.get("action") == "unlock" and e.get("result") == "denied"
        ]
        _mark_windows(out, [(r[0], r[1], r[2]) for r in fails] + fails_pending, BURST_FAILURES, BURST_WINDOW, "failure-burst")
        dels = self.index.db.execute(
            f"SELECT chain, seq, time, command FROM audit_events WHERE vault = ? AND result = 'ok' "
            f"AND action IN ({','.join('?' * len(DELETE_ACTIONS))})",
            (self.vault_id, *DELETE_ACTIONS),
        ).fetchall()
        _mark_windows(out, [(r[0], r[1], r[2]) for r in dels], MASS_DELETES, MASS_WINDOW, "mass-delete")
        by_command: dict[str, list[tuple[str, int]]] = {}
        for r in dels:
            by_command.setdefault(r[3], []).append((r[0], r[1]))
        for keys in by_command.values():
            if len(keys) >= MASS_DELETES:
                for k in keys:
                    out.setdefault(k, set()).add("mass-delete")
        return out

    def pending_count(self) -> int:
        row = self.index.db.execute("SELECT COUNT(*) FROM audit_pending WHERE vault = ?", (self.vault_id,)).fetchone()
        return int(row[0])

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
        self.index.db.execute("BEGIN")
        try:
            chains = [
                r[0] for r in self.index.db.execute(
                    "SELECT DISTINCT chain FROM audit_events WHERE vault = ?", (self.vault_id,))
            ]
            index_side = {
                c: [
                    _row_event(r) | {"mirrored": int(r["mirrored"])}
                    for r in self.index.db.execute(
                        "SELECT * FROM audit_events WHERE vault = ? AND chain = ? ORDER BY seq", (self.vault_id, c))
                ]
                for c in chains
            }
        finally:
            self.index.db.execute("COMMIT")
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


def _matches(
    e: dict[str, Any], since: float | None, until: float | None,
    actions: list[str] | None, path: str | None, result: str | None,
) -> bool:
    import fnmatch

    t = e.get("time", 0) / 1e6
    return (
        (since is None or t >= since)
        and (until is None or t <= until)
        and (not actions or e.get("action") in actions)
        and (path is None or fnmatch.fnmatchcase(str(e.get("path", "")), path))
        and (result is None or e.get("result") == result)
    )


def _mark_windows(
    out: dict[tuple[str, int | None], set[str]],
    items: list[tuple[str, int | None, int]],
    threshold: int,
    window: float,
    flag: str,
) -> None:
    """Flag every item inside some time window of ``window`` seconds holding ``threshold`` items."""
    items = sorted(items, key=lambda x: x[2])
    span = int(window * 1e6)
    lo = 0
    marked_to = -1
    for hi in range(len(items)):
        while items[hi][2] - items[lo][2] > span:
            lo += 1
        if hi - lo + 1 >= threshold:
            for k in range(max(lo, marked_to + 1), hi + 1):
                out.setdefault((items[k][0], items[k][1]), set()).add(flag)
            marked_to = hi


def export_row(e: dict[str, Any]) -> dict[str, Any]:
    """One event as users see it (``--json``, JSON lines and CSV share the fields)."""
    return {
        "time": iso_time(int(e["time"])),
        "action": e["action"],
        "path": e["path"],
        "object": e["object"],
        "result": e["result"],
        "code": e["code"],
        "host": e["host"],
        "user": e["user"],
        "version": e["version"],
        "request_id": e["request_id"],
        "command": e["command"],
        "detail": e["detail"],
        "chain": e["chain"],
        "seq": e["seq"],
        "flags": list(e.get("flags", [])),
        "mac": e["mac"],
        "source": e.get("source", "local"),
    }


# -- the hosted account's own records ----------------------------------------------------
def _server_result(status: str) -> str:
    if status in ("ok", "mfa_ok", "mfa_required"):
        return "ok"
    return "denied" if status in ("failed", "revoked") else "error"


def with_server_events(
    trail: Trail,
    events: list[dict[str, Any]],
    *,
    since: float | None = None,
    until: float | None = None,
    actions: list[str] | None = None,
    path: str | None = None,
    result: str | None = None,
    limit: int | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """``events`` merged with the server's audit log of the account, when the store
    is a Live-Data server (``source: server``; local events are ``source: local``).

    The server's records (every login, upload, download and delete it saw,
    with IP, user agent and request id) have no MAC: ``audit verify`` does not
    cover them.  They name opaque object ids, never a path, so a ``--path``
    filter leaves them out.
    """
    fetch = getattr(trail.store, "server_audit", None)
    if fetch is None or path is not None:
        return events
    merged = list(events)
    for r in fetch(since=since, limit=None if (since or until or actions or result) else limit):
        status = str(r.get("status") or "ok")
        ev: dict[str, Any] = {
            "vault": trail.vault_id, "chain": "server", "seq": r.get("id"), "prev": "", "mac": "",
            "time": int(float(r.get("created_at", 0)) * 1e6), "action": str(r.get("action", "")),
            "path": "", "object": str(r.get("object_id") or ""), "result": _server_result(status),
            "code": 0, "host": str(r.get("ip") or ""), "user": str(r.get("user_agent") or ""),
            "version": "", "request_id": str(r.get("request_id") or ""), "command": "",
            "detail": f"{r.get('object_type') or ''} {status}".strip(), "flags": [], "source": "server",
        }
        if _matches(ev, since, until, actions, None, result):
            merged.append(ev)
    merged.sort(key=lambda e: (e["time"], e["chain"], e["seq"] or 0), reverse=newest_first)
    return merged[:limit] if limit else merged


EXPORT_FIELDS = tuple(export_row({k: 0 if k == "time" else "" for k in ("time", *FIELDS, "chain", "seq", "mac")}))

__all__ = [
    "EXPORT_FIELDS",
    "Problem",
    "Recorder",
    "Trail",
    "attach",
    "current",
    "export_row",
    "finish",
]
