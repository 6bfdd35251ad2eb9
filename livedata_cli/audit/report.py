"""The audit trail as people read it: listing with filters and flags, export rows,
and the hosted account's own records merged in (``livedata audit``)."""

from __future__ import annotations

import json
from typing import Any

from livedata_cli.audit.chain import (
    FIELDS,
    UNAUTHENTICATED,
    Trail,
    _row_event,
    iso_time,
    pending_authentic,
    pending_key,
)
from livedata_cli.index import audit as tables
from livedata_cli.stores import ServerAudit

# Bursts of refused unlocks, and mass deletions, are flagged in listings.
BURST_FAILURES, BURST_WINDOW = 5, 600.0
MASS_DELETES, MASS_WINDOW = 100, 3600.0
DELETE_ACTIONS = ("rm", "purge")


# -- listing -------------------------------------------------------------------
def events(
    trail: Trail,
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
    rows = tables.select(
        trail.index.db, trail.vault_id,
        since_us=None if since is None else int(since * 1e6),
        until_us=None if until is None else int(until * 1e6),
        actions=actions, path_glob=path, result=result, limit=limit, newest_first=newest_first,
    )
    out = [_row_event(r) for r in rows]
    key = pending_key(trail.cache, trail.vault_id)
    for text in tables.pending_texts(trail.index.db, trail.vault_id):
        e = json.loads(text)
        authentic = pending_authentic(key, trail.vault_id, e)
        e = {k: v for k, v in e.items() if k not in ("pid", "pmac")}
        e.update(vault=trail.vault_id, chain="", seq=None, prev="", mac="", unauthenticated=not authentic)
        if _matches(e, since, until, actions, path, result):
            out.append(e)
    flagged = flags(trail)
    for e in out:
        mine = set(flagged.get((e["chain"], e["seq"]), ()))
        if e.pop("unauthenticated", False) or str(e.get("detail", "")).startswith(UNAUTHENTICATED):
            mine.add("unauthenticated")
        e["flags"] = sorted(mine)
    out.sort(key=lambda e: (e["time"], e["chain"], e["seq"] or 0), reverse=newest_first)
    return out[:limit] if limit else out

def flags(trail: Trail) -> dict[tuple[str, int | None], set[str]]:
    """``failure-burst``: at least BURST_FAILURES refused unlocks within BURST_WINDOW;
    ``mass-delete``: at least MASS_DELETES removals in one command or within MASS_WINDOW."""
    out: dict[tuple[str, int | None], set[str]] = {}
    fails: list[tuple[str, int | None, int]] = list(tables.refused_unlocks(trail.index.db, trail.vault_id))
    fails_pending: list[tuple[str, int | None, int]] = [
        ("", None, e["time"])
        for e in (json.loads(t) for t in tables.pending_texts(trail.index.db, trail.vault_id))
        if e.get("action") == "unlock" and e.get("result") == "denied"
    ]
    _mark_windows(out, fails + fails_pending, BURST_FAILURES, BURST_WINDOW, "failure-burst")
    dels = tables.deletions(trail.index.db, trail.vault_id, DELETE_ACTIONS)
    _mark_windows(out, [(r[0], r[1], r[2]) for r in dels], MASS_DELETES, MASS_WINDOW, "mass-delete")
    by_command: dict[str, list[tuple[str, int]]] = {}
    for r in dels:
        by_command.setdefault(r[3], []).append((r[0], r[1]))
    for keys in by_command.values():
        if len(keys) >= MASS_DELETES:
            for k in keys:
                out.setdefault(k, set()).add("mass-delete")
    return out


# -- filters and rows ---------------------------------------------------------------
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
    store = trail.store
    if not isinstance(store, ServerAudit) or path is not None:
        return events
    merged = list(events)
    for r in store.server_audit(since=since, limit=None if (since or until or actions or result) else limit):
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


__all__ = ["EXPORT_FIELDS", "events", "export_row", "flags", "with_server_events"]
