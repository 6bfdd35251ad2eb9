"""LIVEDATA_TESTONLY_WEAKEN_KDF: refused outside a test run, loud inside one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.subprocess

WARNING = "livedata: WARNING: LIVEDATA_TESTONLY_WEAKEN_KDF=1"


def _slot_kdfs(store: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_bytes())["kdf"] for p in sorted((store / "keys").iterdir())]


@pytest.mark.parametrize("marker", [None, ""], ids=["unset", "empty"])
def test_refused_without_the_test_run_marker(cli: Cli, store_dir: Path, marker: str | None) -> None:
    env = {**cli.env, "LIVEDATA_TESTONLY_RUN": marker}
    r = Cli({k: v for k, v in env.items() if v is not None}, cli.cwd)("init")
    assert_one_line_error(r, 2)
    assert "LIVEDATA_TESTONLY_WEAKEN_KDF" in r.stderr and "LIVEDATA_TESTONLY_RUN" in r.stderr
    assert not (store_dir / "config").exists() and not list(store_dir.glob("keys/*"))


def test_refused_for_file_passwords_too(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "will.txt", "my will")
    r = vault_cli("upload", "will.txt", "--password", env={"LIVEDATA_FILE_PASSWORD": "pw", "LIVEDATA_TESTONLY_RUN": ""})
    assert_one_line_error(r, 2)
    assert "will.txt" not in vault_cli.ok("ls").out


def test_used_in_a_test_run_it_warns_once_per_command(cli: Cli, store_dir: Path) -> None:
    r = cli.ok("init")
    assert [line for line in r.stderr.splitlines() if line.startswith(WARNING)] == [r.stderr.splitlines()[0]]
    assert r.stderr.count(WARNING) == 1
    assert _slot_kdfs(store_dir) == [{"alg": "argon2id", "m": 1024, "t": 1, "p": 1}]
    for name in ("a.txt", "b.txt"):
        write(cli.cwd / "in" / name, name)
    r = cli.ok("upload", "in", "--recursive", "--password", env={"LIVEDATA_FILE_PASSWORD": "pw"})
    assert r.stderr.count(WARNING) == 1
    assert WARNING not in cli.ok("ls").stderr  # nothing derived: nothing said


def test_without_it_slots_get_the_real_parameters(cli: Cli, store_dir: Path) -> None:
    r = cli.ok("init", env={"LIVEDATA_TESTONLY_WEAKEN_KDF": "0"})
    assert WARNING not in r.stderr
    assert _slot_kdfs(store_dir) == [{"alg": "argon2id", "m": 65536, "t": 3, "p": 4}]
