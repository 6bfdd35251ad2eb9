"""The recorder: a vault registers with the running command when it opens and hands
its events over when it closes; the command's end writes them to the chain.

Also the rule that keeps audit out of the vault's import circle: ``audit/``
reads a vault through protocols and imports nothing of ``vault/``, not even
for type checking.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from conftest import Cli, write

ROOT = Path(__file__).resolve().parent.parent / "livedata_cli"


def _fresh_command() -> None:
    from livedata_cli.audit import recorder

    recorder._take()  # what main() leaves behind: a command with no vault yet


def test_a_vault_registers_on_open_and_hands_its_events_over_on_close(vault_cli: Cli, open_vault: Any) -> None:
    from livedata_cli.audit import recorder
    from livedata_cli.audit.chain import Trail
    from livedata_cli.audit.report import events

    _fresh_command()
    assert not recorder.opened()
    vault = open_vault()
    assert recorder.opened() and vault.events is recorder.current() and vault.events.vault is vault
    vault.unlock()
    vault.events.add("tag", "a.txt", detail="+x")
    vault.close()
    rec = recorder.current()
    # Handed over: the recorder keeps what it needs to write, not the closed vault.
    assert rec.vault is None and rec.handed is not None and rec.handed.master is not None
    assert recorder.opened()
    rec.add("upload", "late.txt")  # a batch's failures are recorded after the vault closed
    recorder.finish("tag", 0, audited=True)
    assert not recorder.opened()  # the next command starts with nothing
    check = open_vault()
    try:
        paths = {(e["action"], e["path"]) for e in events(Trail.of(check))}
    finally:
        check.close()
    assert {("tag", "a.txt"), ("upload", "late.txt")} <= paths


def test_a_second_vault_after_the_first_closed_starts_a_fresh_recorder(vault_cli: Cli, open_vault: Any) -> None:
    _fresh_command()
    first = open_vault()
    first.events.add("tag", "one.txt")
    first.close()
    second = open_vault()
    assert second.events is not first.events and second.events.events == []


def test_a_command_without_a_vault_key_keeps_its_events_pending(vault_cli: Cli, open_vault: Any) -> None:
    from livedata_cli.audit import recorder
    from livedata_cli.index import audit as tables

    _fresh_command()
    vault = open_vault()  # never unlocked: no key to MAC with
    vault.events.add("download", "a.txt")
    vault.close()
    recorder.finish("download", 0, audited=True)
    check = open_vault()
    try:
        waiting = [t for _id, t in tables.pending(check.index.db, check.vault_id)]
    finally:
        check.close()
    assert any('"a.txt"' in t for t in waiting)


def test_the_cli_records_a_batch_failure_through_the_handed_over_recorder(vault_cli: Cli) -> None:
    """Upload's failures are recorded after its vault closed, and still reach the trail."""
    write(vault_cli.cwd / "ok.txt", "fine")
    r = vault_cli("upload", "ok.txt", "missing.txt")
    assert r.code == 8, r.stderr
    rows = vault_cli.ok("audit", "--json", "--action", "upload").json()
    assert {(e["path"], e["result"]) for e in rows} >= {("ok.txt", "ok"), ("missing.txt", "error")}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_audit_imports_nothing_of_the_vault() -> None:
    wrong = [
        f"{path.relative_to(ROOT.parent)} imports {m}"
        for path in sorted((ROOT / "audit").glob("*.py"))
        for m in sorted(_imports(path))
        if m == "livedata_cli.vault" or m.startswith("livedata_cli.vault.")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_cli_asks_no_module_list_whether_a_vault_was_opened() -> None:
    """The vault's registration says so; ``sys.modules`` is no witness (in-process runs keep modules loaded)."""
    source = (ROOT / "cli" / "common.py").read_text()
    record_audit = source.split("def record_audit")[1].split("\ndef ")[0]
    assert "sys.modules" not in record_audit


def test_the_index_keeps_every_field_an_event_mac_covers() -> None:
    from livedata_cli.audit.chain import FIELDS
    from livedata_cli.index.audit import EVENT_COLUMNS

    assert EVENT_COLUMNS == FIELDS


def test_bytes_that_are_not_utf8_in_an_argument_or_a_name_never_stop_the_trail(vault_cli: Cli, tmp_path: Path) -> None:
    """A command-line argument or a file name with such bytes was kept as an
    event the chain could not encode: from then on every command's events were
    dropped and 'audit' itself failed.  They are kept as \\xNN text."""
    import json
    import os
    import sqlite3

    vault_cli.ok("stats", os.fsdecode(b"x\xff"))  # no vault key: a pending event
    write(vault_cli.cwd / os.fsdecode(b"bad\xfe.txt"), "w")
    vault_cli.ok("upload", os.fsdecode(b"bad\xfe.txt"))
    # An event an older livedata kept pending, as it stored it.
    index = Path(vault_cli.env["LIVEDATA_HOME"]) / "index.sqlite"
    with sqlite3.connect(index) as db:
        vault_id = db.execute("SELECT vault FROM audit_events LIMIT 1").fetchone()[0]
        old = {"time": 1, "action": "stats", "path": "y\udcfe", "object": "", "result": "ok", "code": 0,
               "host": "h", "user": "u", "version": "0", "request_id": "", "command": "c", "detail": "", "pid": "p"}
        db.execute("INSERT INTO audit_pending (vault, event) VALUES (?, ?)", (vault_id, json.dumps(old)))
    r = vault_cli("upload", os.fsdecode(b"bad\xfe.txt"))
    assert r.code == 0 and "audit trail" not in r.stderr, r.stderr
    paths = {e["path"] for e in vault_cli.ok("audit", "--json").json()}
    assert {"x\\xff", "y\\xfe"} <= paths, paths
    vault_cli.ok("audit", "verify")
