"""The audit chain cannot be erased whole, seeded through the index, or cut in both copies unnoticed.

(a) With a keyring, the keyring keeps the head of every chain this home has
seen, so erasing a whole chain (meta, rows and store objects) is caught.
(b) Events waiting in ``audit_pending`` carry a MAC under a pending key kept
in the keyring; one planted by whoever can write the index is chained as
unauthenticated, never as a genuine event.
(c) Without a keyring, MACed head records in the index and the store catch
the same tail cut from both, unless the head records are rolled back too.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSPHRASE, Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


def _db(home: Path) -> sqlite3.Connection:
    db = sqlite3.connect(home / "index.sqlite", isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _chain(home: Path) -> str:
    db = _db(home)
    (chain,) = db.execute("SELECT value FROM meta WHERE key LIKE 'audit_chain:%'").fetchone()
    db.close()
    return str(chain)


def _uploads(cli: Cli, *names: str, env: dict[str, Any] | None = None) -> None:
    for name in names:
        write(cli.cwd / name, name)
        cli.ok("upload", name, env=env)


@pytest.mark.keyring
def test_a_whole_chain_erased_is_caught_by_the_keyring(
    cli: Cli, store_dir: Path, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    _uploads(cli, "a.txt", "b.txt", env=env)
    assert cli.ok("audit", "verify", "--json", env=env).json()["intact"]
    chain = _chain(tmp_path / "home")
    db = _db(tmp_path / "home")
    db.execute("DELETE FROM audit_events")
    db.execute("DELETE FROM audit_objects")
    db.execute("DELETE FROM meta WHERE key LIKE 'audit_chain:%' OR key LIKE 'audit_head:%'")
    db.close()
    shutil.rmtree(store_dir / "audit" / chain)
    (store_dir / "audit-head" / chain).unlink()
    r = cli("audit", "verify", env=env)
    assert_one_line_error(r, 5)
    assert f"chain {chain}" in r.stderr and "the whole chain was erased" in r.stderr, r.stderr
    # Still caught after the next command starts a new chain.
    cli.ok("ls", env=env)
    _uploads(cli, "c.txt", env=env)
    report = cli("audit", "verify", "--json", env=env)
    assert report.code == 5
    assert [c["chain"] for c in report.json()["chains"] if not c["intact"]] == [chain]


@pytest.mark.keyring
def test_pending_events_planted_in_the_index_are_chained_as_unauthenticated(
    cli: Cli, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    _uploads(cli, "a.txt", env=env)
    cli.ok("lock", env=env)
    assert_one_line_error(cli("download", "a.txt", "-o", "-", env={**env, "LIVEDATA_PASSPHRASE": "wrong"}), 4)
    db = _db(tmp_path / "home")
    rows = [r["event"] for r in db.execute("SELECT event FROM audit_pending ORDER BY id")]
    assert len(rows) == 3 and all('"pmac"' in r for r in rows)  # lock, the refused unlock, the download
    genuine = rows[1]
    planted = genuine.replace('"action": "unlock"', '"action": "rm"').replace('"path": ""', '"path": "a.txt"')
    vault = db.execute("SELECT vault FROM audit_pending LIMIT 1").fetchone()[0]
    db.execute("INSERT INTO audit_pending (vault, event) VALUES (?, ?)", (vault, planted))
    db.execute("INSERT INTO audit_pending (vault, event) VALUES (?, ?)", (vault, genuine))  # replayed
    db.close()
    shown = cli.ok("audit", "--json", env={**env, "LIVEDATA_PASSPHRASE": PASSPHRASE}).json()
    waiting = [e for e in shown if e["action"] == "rm"]
    assert waiting and "unauthenticated" in waiting[0]["flags"]
    cli.ok("ls", env={**env, "LIVEDATA_PASSPHRASE": PASSPHRASE})
    events = cli.ok("audit", "--json", env=env).json()
    assert all(e["seq"] and e["mac"] for e in events)  # all chained now
    (rm,) = [e for e in events if e["action"] == "rm"]
    assert "unauthenticated" in rm["flags"] and rm["detail"].startswith("UNAUTHENTICATED")
    refused = [e for e in events if e["action"] == "unlock"]
    assert len(refused) == 2
    assert [("unauthenticated" in e["flags"]) for e in sorted(refused, key=lambda e: e["seq"])] == [False, True]
    assert not any("unauthenticated" in e["flags"] for e in events if e["action"] in ("lock", "download"))
    assert cli.ok("audit", "verify", "--json", env=env).json()["intact"]


def _cut_last_command(home: Path, store: Path) -> None:
    """Cut the last command's events from the index and the store alike."""
    last = sorted(p for p in (store / "audit").rglob("*") if p.is_file())[-1]
    first = int(last.name.split("-")[0])
    db = _db(home)
    db.execute("DELETE FROM audit_events WHERE seq >= ?", (first,))
    db.execute("DELETE FROM audit_objects WHERE name LIKE ?", (f"%{last.name}",))
    db.close()
    last.unlink()


def test_a_tail_cut_from_index_and_store_is_caught_without_a_keyring(
    vault_cli: Cli, store_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _uploads(vault_cli, "a.txt", "b.txt")
    chain = _chain(home)
    # What a careful attacker would have saved: the head records before the last command.
    db = _db(home)
    (saved_meta,) = db.execute("SELECT value FROM meta WHERE key LIKE 'audit_head:%'").fetchone()
    db.close()
    saved_object = (store_dir / "audit-head" / chain).read_bytes()
    _uploads(vault_cli, "c.txt")
    assert vault_cli.ok("audit", "verify", "--json").json()["intact"]
    backup = tmp_path / "backup"
    shutil.copytree(home, backup / "home")
    shutil.copytree(store_dir, backup / "store")

    _cut_last_command(home, store_dir)
    r = vault_cli("audit", "verify")
    assert_one_line_error(r, 5)
    assert "head record check" in r.stderr and "the tail was cut from both" in r.stderr, r.stderr

    # A forged head record fails its MAC.
    db = _db(home)
    db.execute("UPDATE meta SET value = replace(value, '\"seq\": ', '\"seq\": 1') WHERE key LIKE 'audit_head:%'")
    db.close()
    r = vault_cli("audit", "verify")
    assert_one_line_error(r, 5)
    assert "fails authentication" in r.stderr

    # The limit, as the README states it: head records rolled back to saved copies as well go unnoticed.
    db = _db(home)
    db.execute("UPDATE meta SET value = ? WHERE key LIKE 'audit_head:%'", (saved_meta,))
    db.close()
    (store_dir / "audit-head" / chain).write_bytes(saved_object)
    assert vault_cli.ok("audit", "verify", "--json").json()["intact"]
