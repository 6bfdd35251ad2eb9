"""The audit trail's tables: chained events, events waiting for the key, imported objects.

Their migrations (``0005_audit_trail``, ``0010_audit_unmirrored``) and every
query the trail runs (:mod:`livedata_cli.audit`) live here.  Functions take
the connection they run on, so a caller keeps its statements in one
transaction (``with index.write() as db``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# The audit trail (livedata_cli/audit/chain.py): chained, MACed events of
# every machine; events waiting for the key to be chained; and which
# store objects of other machines' chains were imported.
TRAIL = """
        CREATE TABLE audit_events (
            vault TEXT NOT NULL,
            chain TEXT NOT NULL,
            seq INTEGER NOT NULL,
            time INTEGER NOT NULL,
            action TEXT NOT NULL,
            path TEXT NOT NULL DEFAULT '',
            object TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL,
            code INTEGER NOT NULL DEFAULT 0,
            host TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            request_id TEXT NOT NULL DEFAULT '',
            command TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            prev TEXT NOT NULL,
            mac TEXT NOT NULL,
            mirrored INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (vault, chain, seq)
        );
        CREATE INDEX audit_events_time ON audit_events(vault, time);
        CREATE TABLE audit_pending (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            vault TEXT NOT NULL,
            event TEXT NOT NULL
        );
        CREATE TABLE audit_objects (name TEXT PRIMARY KEY)
        """

# The audit events not yet mirrored to the store: each command finds its
# own few, not every event of the chain.
UNMIRRORED = """
        CREATE INDEX audit_unmirrored ON audit_events(vault, chain, seq) WHERE mirrored = 0
        """

# The columns of an event besides vault, chain, seq, prev, mac: the fields its MAC
# covers (livedata_cli.audit.chain.FIELDS, which a test keeps equal).
EVENT_COLUMNS = (
    "time", "action", "path", "object", "result", "code",
    "host", "user", "version", "request_id", "command", "detail",
)


# -- the chain of this machine -------------------------------------------------
def own_chain(db: sqlite3.Connection, vault_id: str, new_id: str) -> str:
    """This machine's chain id, made ``new_id`` by its first event (inside a write
    transaction, so two first commands agree on one chain)."""
    key = f"audit_chain:{vault_id}"
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, new_id))
    return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def put_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def meta_from(db: sqlite3.Connection, prefix: str) -> list[tuple[str, str]]:
    """Every meta entry whose key starts with ``prefix``."""
    return [(str(k), str(v)) for k, v in db.execute(
        "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff"))]


def head(db: sqlite3.Connection, vault_id: str, chain: str) -> tuple[int, str] | None:
    """The newest event of a chain in the index: (seq, mac)."""
    row = db.execute(
        "SELECT seq, mac FROM audit_events WHERE vault = ? AND chain = ? ORDER BY seq DESC LIMIT 1",
        (vault_id, chain),
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def add_events(db: sqlite3.Connection, events: Iterable[Mapping[str, Any]], *, mirrored: bool = False) -> int:
    """Chained events into the index; returns how many were new.  ``mirrored``:
    they came from the store (another machine's), so they are already there and
    an event the index holds already is kept as it is."""
    before = db.total_changes
    if mirrored:
        db.executemany(
            f"INSERT OR IGNORE INTO audit_events (vault, chain, seq, prev, mac, mirrored, {', '.join(EVENT_COLUMNS)}) "
            f"VALUES (:vault, :chain, :seq, :prev, :mac, 1, {', '.join(':' + f for f in EVENT_COLUMNS)})",
            events,
        )
    else:
        db.executemany(
            f"INSERT INTO audit_events (vault, chain, seq, prev, mac, {', '.join(EVENT_COLUMNS)}) "
            f"VALUES (:vault, :chain, :seq, :prev, :mac, {', '.join(':' + f for f in EVENT_COLUMNS)})",
            events,
        )
    return db.total_changes - before


def chains(db: sqlite3.Connection, vault_id: str) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT DISTINCT chain FROM audit_events WHERE vault = ?", (vault_id,))]


def chain_rows(db: sqlite3.Connection, vault_id: str, chain: str) -> list[sqlite3.Row]:
    """Every event of one chain in the index, by seq."""
    return db.execute(
        "SELECT * FROM audit_events WHERE vault = ? AND chain = ? ORDER BY seq", (vault_id, chain)
    ).fetchall()


def snapshot(db: sqlite3.Connection, vault_id: str) -> dict[str, list[sqlite3.Row]]:
    """Every chain's events, read in one transaction (what ``audit verify`` checks)."""
    db.execute("BEGIN")
    try:
        return {c: chain_rows(db, vault_id, c) for c in chains(db, vault_id)}
    finally:
        db.execute("COMMIT")


# -- the store's copy ------------------------------------------------------------
def oldest_unmirrored(db: sqlite3.Connection, vault_id: str, chain: str) -> int | None:
    row = db.execute(
        "SELECT MIN(seq) FROM audit_events WHERE vault = ? AND chain = ? AND mirrored = 0", (vault_id, chain)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def unmirrored(db: sqlite3.Connection, vault_id: str, chain: str) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT * FROM audit_events WHERE vault = ? AND chain = ? AND mirrored = 0 ORDER BY seq",
        (vault_id, chain),
    ).fetchall()


def mark_mirrored(db: sqlite3.Connection, vault_id: str, chain: str, first: int, last: int, name: str) -> None:
    """Events ``first..last`` are in the store object ``name``."""
    db.execute(
        "UPDATE audit_events SET mirrored = 1 WHERE vault = ? AND chain = ? AND seq BETWEEN ? AND ?",
        (vault_id, chain, first, last),
    )
    add_object(db, name)


def add_object(db: sqlite3.Connection, name: str) -> None:
    db.execute("INSERT OR IGNORE INTO audit_objects (name) VALUES (?)", (name,))


def objects(db: sqlite3.Connection) -> set[str]:
    """The store objects whose events this index holds (mirrored or imported)."""
    return {str(r[0]) for r in db.execute("SELECT name FROM audit_objects")}


# -- events waiting for the key ---------------------------------------------------
def add_pending(db: sqlite3.Connection, vault_id: str, events: Iterable[str]) -> None:
    """Events (JSON text) that wait for the next command with the vault key."""
    db.executemany("INSERT INTO audit_pending (vault, event) VALUES (?, ?)", [(vault_id, e) for e in events])


def pending(db: sqlite3.Connection, vault_id: str) -> list[tuple[int, str]]:
    """The waiting events (id, JSON text), oldest first."""
    return [(int(r[0]), str(r[1])) for r in db.execute(
        "SELECT id, event FROM audit_pending WHERE vault = ? ORDER BY id", (vault_id,))]


def drop_pending(db: sqlite3.Connection, vault_id: str, up_to: int) -> None:
    db.execute("DELETE FROM audit_pending WHERE vault = ? AND id <= ?", (vault_id, up_to))


def pending_count(db: sqlite3.Connection, vault_id: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM audit_pending WHERE vault = ?", (vault_id,)).fetchone()[0])


# -- listing -------------------------------------------------------------------------
def select(
    db: sqlite3.Connection,
    vault_id: str,
    *,
    since_us: int | None = None,
    until_us: int | None = None,
    actions: list[str] | None = None,
    path_glob: str | None = None,
    result: str | None = None,
    limit: int | None = None,
    newest_first: bool = True,
) -> list[sqlite3.Row]:
    """Chained events of every chain, filtered, by time (then chain and seq)."""
    where, args = ["vault = ?"], [vault_id]
    if since_us is not None:
        where.append("time >= ?")
        args.append(since_us)  # type: ignore[arg-type]
    if until_us is not None:
        where.append("time <= ?")
        args.append(until_us)  # type: ignore[arg-type]
    if actions:
        where.append(f"action IN ({','.join('?' * len(actions))})")
        args += actions
    if path_glob is not None:
        where.append("path GLOB ?")
        args.append(path_glob)
    if result is not None:
        where.append("result = ?")
        args.append(result)
    order = "DESC" if newest_first else "ASC"
    return db.execute(
        f"SELECT * FROM audit_events WHERE {' AND '.join(where)} "
        f"ORDER BY time {order}, chain {order}, seq {order}" + (f" LIMIT {int(limit)}" if limit else ""),
        args,
    ).fetchall()


def refused_unlocks(db: sqlite3.Connection, vault_id: str) -> list[tuple[str, int, int]]:
    """(chain, seq, time) of every chained refused unlock."""
    return [(r[0], r[1], r[2]) for r in db.execute(
        "SELECT chain, seq, time FROM audit_events WHERE vault = ? AND action = 'unlock' AND result = 'denied'",
        (vault_id,),
    )]


def deletions(db: sqlite3.Connection, vault_id: str, actions: tuple[str, ...]) -> list[tuple[str, int, int, str]]:
    """(chain, seq, time, command) of every chained removal that succeeded."""
    return [(r[0], r[1], r[2], r[3]) for r in db.execute(
        f"SELECT chain, seq, time, command FROM audit_events WHERE vault = ? AND result = 'ok' "
        f"AND action IN ({','.join('?' * len(actions))})",
        (vault_id, *actions),
    )]


def pending_texts(db: sqlite3.Connection, vault_id: str) -> Iterator[str]:
    """The waiting events' JSON text, in table order."""
    for r in db.execute("SELECT event FROM audit_pending WHERE vault = ?", (vault_id,)):
        yield str(r[0])
