"""The audit trail: every command leaves events; editing, deleting, inserting,
reordering or cutting off events, in the local SQLite index or in the store's
encrypted copy, is caught by 'audit verify' (exit 5, naming the first bad
event and the check that caught it)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import PASSPHRASE, TEST_RUN, Cli, Result, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


def _db(home: Path) -> sqlite3.Connection:
    db = sqlite3.connect(home / "index.sqlite", isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _objects(store: Path) -> list[Path]:
    """This vault's audit objects, in sequence order."""
    return sorted(p for p in (store / "audit").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def history_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose vault has a few commands' worth of events (one store object
    each), built once per module and copied by each test that tampers with it."""
    root = tmp_path_factory.mktemp("history")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(
        LIVEDATA_HOME=str(root / "home"),
        LIVEDATA_PASSPHRASE=PASSPHRASE,
        LIVEDATA_TESTONLY_WEAKEN_KDF="1",
        LIVEDATA_TESTONLY_RUN=TEST_RUN,
        LIVEDATA_NO_KEYRING="1",
    )
    cli = Cli(env, root)
    cli.ok("init")
    for name in ("a.txt", "b.txt", "c.txt"):
        write(root / name, name)
        cli.ok("upload", name)
    cli.ok("download", "a.txt", "-o", "-")
    cli.ok("tag", "b.txt", "work")
    cli.ok("rm", "c.txt")
    intact = cli.ok("audit", "verify", "--json").json()
    assert intact["intact"] and intact["events"] == 7, intact
    return root / "home"


@pytest.fixture
def history(cli: Cli, history_template: Path, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    shutil.copytree(history_template, home)
    settings = json.loads((home / "vault.json").read_text())
    settings["store"] = str(home / "store")
    (home / "vault.json").write_text(json.dumps(settings))
    assert cli.ok("audit", "verify", "--json").json()["intact"]
    return {"home": home, "store": home / "store", "events": 7}


def _assert_caught(cli: Cli, *needles: str) -> Result:
    r = cli("audit", "verify")
    assert_one_line_error(r, 5)
    first = r.stderr.splitlines()[0]
    for needle in needles:
        assert needle in first, (needle, r.stderr)
    return r


# -- what is recorded -----------------------------------------------------------
def test_commands_leave_events_newest_first(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "docs" / "a.txt", "a")
    write(vault_cli.cwd / "docs" / "b.txt", "b")
    vault_cli.ok("upload", "docs", "--recursive")
    vault_cli.ok("download", "docs/a.txt", "-o", "-")
    assert vault_cli("download", "docs/nope.txt", "-o", "-").code == 3
    vault_cli.ok("rm", "docs/b.txt")
    vault_cli.ok("keys", "add", env={"LIVEDATA_NEW_PASSPHRASE": "second"})
    events = vault_cli.ok("audit", "--json").json()
    seen = [(e["action"], e["path"], e["result"], e["code"]) for e in events]
    assert seen == [
        ("keys add", "", "ok", 0),
        ("rm", "docs/b.txt", "ok", 0),
        ("download", "docs/nope.txt", "error", 3),
        ("download", "docs/a.txt", "ok", 0),
        ("upload", "docs/b.txt", "ok", 0),
        ("upload", "docs/a.txt", "ok", 0),
        ("init", "", "ok", 0),
    ]
    e = events[3]
    assert e["host"] and e["user"] and e["version"] and len(e["object"]) == 32 and e["request_id"] == ""
    assert [x["seq"] for x in reversed(events)] == list(range(1, 8))
    # Filters; a listing is not itself an event.
    only = vault_cli.ok("audit", "--json", "--action", "upload", "--path", "docs/a*").json()
    assert [(x["action"], x["path"]) for x in only] == [("upload", "docs/a.txt")]
    assert [x["code"] for x in vault_cli.ok("audit", "--json", "--result", "error").json()] == [3]
    assert len(vault_cli.ok("audit", "--json", "--limit", "2").json()) == 2
    assert vault_cli.ok("audit", "--json", "--since", "2999-01-01").json() == []
    assert len(vault_cli.ok("audit", "--json", "--until", "1d").json()) == 0
    text = vault_cli.ok("audit").out.splitlines()
    assert len(text) == 7 and "download" in text[2] and "error (3)" in text[2]
    assert_one_line_error(vault_cli("audit", "--since", "yesterday-ish"), 2)
    assert_one_line_error(vault_cli("audit", "--result", "maybe"), 2)


def test_store_holds_one_encrypted_object_per_command(vault_cli: Cli, store_dir: Path) -> None:
    for i in range(300):
        write(vault_cli.cwd / "many" / f"secret-name-{i}.txt", str(i))
    vault_cli.ok("upload", "many", "--recursive")
    objects = _objects(store_dir)
    assert len(objects) == 2  # init, then the whole upload
    assert objects[-1].name == "000000000002-000000000301"
    assert b"secret-name" not in objects[-1].read_bytes()


# -- tampering with the real SQLite index ------------------------------------------
def _edit(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit_events SET path = 'innocent.txt' WHERE seq = 3")


def _delete(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_events WHERE seq = 3")


def _insert(db: sqlite3.Connection) -> None:
    # Make room after #3 and slip a forged event in.
    db.execute("UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3")
    db.execute("UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000")
    db.execute(
        "INSERT INTO audit_events SELECT vault, chain, 4, time, 'download', 'payroll.xlsx', object, result, code, "
        "host, user, version, request_id, command, detail, mac, mac, 1 FROM audit_events WHERE seq = 3"
    )


def _reorder(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit_events SET seq = -1 WHERE seq = 3")
    db.execute("UPDATE audit_events SET seq = 3 WHERE seq = 4")
    db.execute("UPDATE audit_events SET seq = 4 WHERE seq = -1")


def _truncate(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM audit_events WHERE seq >= 6")


@pytest.mark.parametrize(
    "tamper,needles",
    [
        (_edit, ["event #3 ", "MAC check", "edited or forged"]),
        (_delete, ["event #3 ", "sequence check", "deleted"]),
        (_insert, ["event #4 ", "MAC check"]),
        (_reorder, ["event #3 ", "MAC check", "moved or copied"]),
        (_truncate, ["event #6 ", "head check", "index's tail was truncated"]),
    ],
    ids=["edit", "delete", "insert", "reorder", "truncate"],
)
def test_tampered_index_is_caught(
    cli: Cli, history: dict[str, Any], tamper: Callable[[sqlite3.Connection], None], needles: list[str]
) -> None:
    db = _db(history["home"])
    tamper(db)
    db.close()
    _assert_caught(cli, *needles)
    report = cli("audit", "verify", "--json")
    assert report.code == 5 and report.json()["intact"] is False


# -- tampering with the store's copy -----------------------------------------------
def _s_edit(objs: list[Path]) -> None:
    data = bytearray(objs[2].read_bytes())
    data[-20] ^= 1
    objs[2].write_bytes(bytes(data))


def _s_delete(objs: list[Path]) -> None:
    objs[2].unlink()


def _s_insert(objs: list[Path]) -> None:
    # Replay an old object as if it held later events.
    shutil.copy(objs[2], objs[2].parent / "000000000008-000000000008")


def _s_reorder(objs: list[Path]) -> None:
    a, b = objs[2].read_bytes(), objs[3].read_bytes()
    objs[2].write_bytes(b)
    objs[3].write_bytes(a)


def _s_truncate(objs: list[Path]) -> None:
    objs[-1].unlink()
    objs[-2].unlink()


@pytest.mark.parametrize(
    "tamper,needles",
    [
        (_s_edit, ["event #3 ", "store authentication check", "fails authentication"]),
        (_s_delete, ["event #3 ", "sequence check", "deleted"]),
        (_s_insert, ["event #8 ", "store authentication check", "holds the events of"]),
        (_s_reorder, ["event #3 ", "store authentication check", "holds the events of"]),
        (_s_truncate, ["event #6 ", "head check", "store's tail was truncated"]),
    ],
    ids=["edit", "delete", "insert", "reorder", "truncate"],
)
def test_tampered_store_copy_is_caught(
    cli: Cli, history: dict[str, Any], tamper: Callable[[list[Path]], None], needles: list[str]
) -> None:
    objs = _objects(history["store"])
    assert [o.name for o in objs][:4] == [f"{i:012d}-{i:012d}" for i in range(1, 5)]
    tamper(objs)
    _assert_caught(cli, *needles)


def test_rolled_back_index_forks_the_chain(cli: Cli, history: dict[str, Any]) -> None:
    """Events cut from the index, then new ones written over their numbers: both
    versions of those events end up in the store, and the fork is caught."""
    db = _db(history["home"])
    _truncate(db)
    db.close()
    cli.ok("download", "a.txt", "-o", "-")
    r = cli("audit", "verify")
    assert_one_line_error(r, 5)
    assert "event #6 " in r.stderr and ("forked" in r.stderr or "differs" in r.stderr), r.stderr


# -- failed unlocks ---------------------------------------------------------------
def test_failed_unlock_is_kept_and_chained_after_the_next_success(
    vault_cli: Cli, tmp_path: Path
) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    wrong = {"LIVEDATA_PASSPHRASE": "not the passphrase"}
    assert_one_line_error(vault_cli("download", "a.txt", "-o", "-", env=wrong), 4)
    db = _db(tmp_path / "home")
    pending = [json.loads(r["event"]) for r in db.execute("SELECT event FROM audit_pending ORDER BY id")]
    assert [(e["action"], e["result"], e["code"]) for e in pending] == [
        ("unlock", "denied", 4),
        ("download", "denied", 4),
    ]
    assert "mac" not in pending[0]  # no key: it cannot be MACed yet
    # 'audit' itself needs the key, so it chains them; and refused, it adds one more.
    assert_one_line_error(vault_cli("audit", env=wrong), 4)
    assert db.execute("SELECT COUNT(*) FROM audit_pending").fetchone()[0] == 3
    vault_cli.ok("download", "a.txt", "-o", "-")
    assert db.execute("SELECT COUNT(*) FROM audit_pending").fetchone()[0] == 0
    db.close()
    events = vault_cli.ok("audit", "--json").json()
    refused = [e for e in events if e["result"] == "denied"]
    assert [e["action"] for e in refused] == ["unlock", "download", "unlock"] or len(refused) == 3
    assert all(e["seq"] and e["mac"] for e in refused)
    assert vault_cli.ok("audit", "verify", "--json").json()["intact"]


def test_a_burst_of_failed_unlocks_is_flagged(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    wrong = {"LIVEDATA_PASSPHRASE": "guess"}
    for _ in range(5):
        assert vault_cli("download", "a.txt", "-o", "-", env=wrong).code == 4
    events = vault_cli.ok("audit", "--json").json()
    unlocks = [e for e in events if e["action"] == "unlock"]
    assert len(unlocks) >= 5 and all("failure-burst" in e["flags"] for e in unlocks)
    # Without a keyring nothing could MAC them while they waited: flagged as such, and nothing else.
    assert not any(set(e["flags"]) - {"unauthenticated"} for e in events if e["action"] != "unlock")
    assert all("unauthenticated" in e["flags"] for e in events if e["result"] == "denied")
    assert "[failure-burst, unauthenticated]" in vault_cli.ok("audit", "--action", "unlock").out


def test_mass_deletion_is_flagged(vault_cli: Cli, open_vault: Any) -> None:
    from livedata_cli.audit import report
    from livedata_cli.audit.chain import Trail
    from livedata_cli.audit.recorder import Recorder

    vault = open_vault()
    trail = Trail.of(vault)
    rec = Recorder()
    for i in range(120):
        rec.add("purge", f"old/{i}.log", object=f"{i:032x}")
    rec.add("upload", "keep.txt")
    trail.append(rec.events)
    flagged = {e["path"]: e["flags"] for e in report.events(trail)}
    assert flagged["old/7.log"] == ["mass-delete"] and flagged["keep.txt"] == []
    assert trail.verify()["intact"]


# -- several writers ------------------------------------------------------------
def test_processes_at_once_give_one_clean_history(vault_cli: Cli) -> None:
    """Two uploads of 1,000 files and a download of 200 running together: one
    chain, every event in it, and it verifies."""
    for side in ("left", "right", "seed"):
        for i in range(200 if side == "seed" else 1000):
            write(vault_cli.cwd / side / f"{i}.txt", f"{side} {i}")
    vault_cli.ok("upload", "seed", "--recursive", "-q")
    commands = [
        ("upload", "left", "--recursive", "-q"),
        ("upload", "right", "--recursive", "-q"),
        ("download", "seed/", "-o", "restored", "-q"),
    ]
    procs = [vault_cli.popen(*c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    report = vault_cli.ok("audit", "verify", "--json").json()
    assert report["intact"], report["problems"]
    assert report["events"] == 2401 and len(report["chains"]) == 1
    r = vault_cli.ok("audit", "verify")
    assert "intact: 2,401 events, chain head " in r.stderr
    counts: dict[str, int] = {}
    for e in vault_cli.ok("audit", "--json").json():
        counts[e["action"]] = counts.get(e["action"], 0) + 1
    assert counts == {"init": 1, "upload": 2200, "download": 200}


def test_two_homes_on_one_store_merge_into_one_history(
    vault_cli: Cli, store_dir: Path, tmp_path: Path
) -> None:
    other = Cli({**vault_cli.env, "LIVEDATA_HOME": str(tmp_path / "laptop")}, vault_cli.cwd)
    other.ok("init", "--store", str(store_dir))
    write(vault_cli.cwd / "one.txt", "1")
    write(vault_cli.cwd / "two.txt", "2")
    vault_cli.ok("upload", "one.txt")
    other.ok("upload", "two.txt")
    vault_cli.ok("sync")
    vault_cli.ok("download", "two.txt", "-o", "-")
    other.ok("download", "one.txt", "-o", "-")
    for cli in (vault_cli, other):
        events = cli.ok("audit", "--json").json()
        assert len({e["chain"] for e in events}) == 2
        assert [(e["action"], e["path"]) for e in reversed(events) if e["action"] != "sync"] == [
            ("init", ""),
            ("init", ""),
            ("upload", "one.txt"),
            ("upload", "two.txt"),
            ("download", "two.txt"),
            ("download", "one.txt"),
        ]
        report = cli.ok("audit", "verify", "--json").json()
        assert report["intact"] and len(report["chains"]) == 2, report
        assert [c["this_machine"] for c in report["chains"]] == [True, False]
    # The store operator cutting the other machine's newest object off is seen
    # by a machine that has already imported it.
    theirs = next(c["chain"] for c in vault_cli.ok("audit", "verify", "--json").json()["chains"] if not c["this_machine"])
    sorted((store_dir / "audit" / theirs).iterdir())[-1].unlink()
    r = vault_cli("audit", "verify")
    assert_one_line_error(r, 5)
    assert f"of chain {theirs}" in r.stderr and "store's tail was truncated" in r.stderr


# -- export ------------------------------------------------------------------------
def test_export_round_trips_through_csv_and_json(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "odd, \"name\"\n.txt", "x")
    write(vault_cli.cwd / "plain.txt", "y")
    vault_cli.ok("upload", "odd, \"name\"\n.txt", "plain.txt")
    vault_cli.ok("tag", "plain.txt", "a", "b")
    events = list(reversed(vault_cli.ok("audit", "--json").json()))
    jsonl = vault_cli.ok("audit", "export", "--format", "jsonl").out
    assert [json.loads(line) for line in jsonl.splitlines()] == events
    vault_cli.ok("audit", "export", "--format", "csv", "-o", "trail.csv")
    path = vault_cli.cwd / "trail.csv"
    assert path.stat().st_mode & 0o777 == 0o600
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    as_text = [
        {k: ";".join(v) if isinstance(v, list) else "" if v is None else str(v) for k, v in e.items()}
        for e in events
    ]
    assert rows == as_text
    assert any(r["path"] == "odd, \"name\"\n.txt" for r in rows)
    out = vault_cli.ok("audit", "export", "--format", "csv", "--action", "tag").out
    assert [r["detail"] for r in csv.DictReader(io.StringIO(out))] == ["+a +b"]
    assert_one_line_error(vault_cli("audit", "export", "--format", "xml"), 2)


def test_audit_on_an_empty_vault(vault_cli: Cli) -> None:
    assert "intact: 1 events" in vault_cli.ok("audit", "verify").stderr
    assert_one_line_error(Cli({**vault_cli.env, "LIVEDATA_HOME": str(vault_cli.cwd / "nowhere")}, vault_cli.cwd)("audit"), 3)


@pytest.mark.keyring
def test_tail_cut_from_index_and_store_is_caught_by_the_keyring(
    cli: Cli, store_dir: Path, tmp_path: Path, secret_service: dict[str, str]
) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    for name in ("a.txt", "b.txt"):
        write(cli.cwd / name, name)
        cli.ok("upload", name, env=env)
    assert cli.ok("audit", "verify", "--json", env=env).json()["intact"]
    db = _db(tmp_path / "home")
    db.execute("DELETE FROM audit_events WHERE seq = 3")
    db.close()
    _objects(store_dir)[-1].unlink()
    r = cli("audit", "verify", env=env)
    assert_one_line_error(r, 5)
    assert "event #3 " in r.stderr and "keyring head check" in r.stderr, r.stderr


def test_store_copy_that_cannot_be_written_waits_for_the_next_command(
    vault_cli: Cli, store_dir: Path
) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    shutil.rmtree(store_dir / "tmp", ignore_errors=True)
    (store_dir / "tmp").write_text("not a folder: every store write fails")
    r = vault_cli.ok("download", "a.txt", "-o", "-")
    assert r.stdout == b"a"
    assert r.stderr.startswith("livedata: warning: audit trail: events kept in the index"), r.stderr
    (store_dir / "tmp").unlink()
    vault_cli.ok("download", "a.txt", "-o", "-")
    report = vault_cli.ok("audit", "verify", "--json").json()
    assert report["intact"] and report["events"] == 4
    assert [o.name for o in _objects(store_dir)][-1] == "000000000003-000000000004"


def test_a_limit_past_sqlite_integers_is_a_usage_error(vault_cli: Cli) -> None:
    for args in (["audit"], ["audit", "export", "--json"]):
        assert_one_line_error(vault_cli(*args, "--limit", str(1 << 63)), 2)
    assert vault_cli("audit", "--limit", str((1 << 63) - 1)).code == 0
