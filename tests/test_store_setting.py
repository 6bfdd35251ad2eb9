"""LIVEDATA_STORE is honoured by every command (as RESTIC_REPOSITORY), never silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


def _home(cli: Cli, name: str, **extra: str) -> Cli:
    home = Path(cli.env["LIVEDATA_HOME"]).parent / name
    work = home.parent / f"{name}-work"
    work.mkdir(parents=True)
    return Cli({**cli.env, "LIVEDATA_HOME": str(home), **extra}, work)


def test_a_fresh_home_attaches_to_the_named_store(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.txt", "from the first machine\n")
    vault_cli.ok("upload", "a.txt")
    ci = _home(vault_cli, "ci-job", LIVEDATA_STORE=str(store_dir))
    r = ci.ok("ls")
    assert r.out.split() == ["a.txt"] and "attached" in r.stderr
    assert ci.ok("download", "a.txt", "-o", "-").stdout == b"from the first machine\n"
    write(ci.cwd / "b.txt", "from ci\n")
    ci.ok("upload", "b.txt")
    vault_cli.ok("sync")
    assert vault_cli.ok("ls").out.split() == ["a.txt", "b.txt"]
    assert "attached" not in ci.ok("ls").stderr  # once


def test_another_store_than_the_homes_vault_is_refused(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "x\n")
    r = vault_cli("upload", "a.txt", env={"LIVEDATA_STORE": str(tmp_path / "elsewhere")})
    assert_one_line_error(r, 2)
    assert "LIVEDATA_STORE" in r.stderr and "LIVEDATA_HOME" in r.stderr
    assert not (tmp_path / "elsewhere").exists()
    same = vault_cli.env["LIVEDATA_HOME"] + "/store/"
    vault_cli.ok("upload", "a.txt", env={"LIVEDATA_STORE": same})


def test_an_empty_store_is_not_made_a_vault(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    r = cli("ls", env={"LIVEDATA_STORE": str(empty)})
    assert_one_line_error(r, 3)
    assert "livedata init" in r.stderr
    assert list(empty.iterdir()) == [] or not (empty / "config").exists()
