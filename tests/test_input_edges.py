"""Odd inputs an outside tester found: each a one-line error with its documented
exit code (or the right result), never a traceback or a partial file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


# -- upload --as naming the vault root ------------------------------------------------
@pytest.mark.parametrize("as_", [".", "./.", ".//.", "/"])
def test_a_file_is_never_stored_at_the_vault_root_path(vault_cli: Cli, as_: str) -> None:
    cli = vault_cli
    write(cli.cwd / "o.txt", "x\n")
    r = cli("upload", "o.txt", "--as", as_)
    assert_one_line_error(r, 2)
    assert repr(as_) in r.stderr  # the bad vault path is named
    r = cli("upload", "-", "--as", as_, input=b"x\n")
    assert_one_line_error(r, 2)
    assert cli.ok("ls", "--json").json() == []


def test_as_ending_in_a_slash_or_empty_is_the_root_folder(vault_cli: Cli, tmp_path: Path) -> None:
    """``--as ./`` and ``--as ''`` name a folder (the root), as ``--as photos/`` does:
    the file keeps its own name there; a folder's files land at the root."""
    cli = vault_cli
    write(cli.cwd / "o.txt", "x\n")
    write(cli.cwd / "d" / "in.txt", "in\n")
    cli.ok("upload", "o.txt", "--as", "./")
    cli.ok("upload", "o.txt", "--as", "")
    cli.ok("upload", "d", "--recursive", "--as", ".")
    assert cli.ok("ls").out.split() == ["in.txt", "o.txt"]
    cli.ok("download", "", "-o", str(tmp_path / "all"))  # the whole vault restores
    assert (tmp_path / "all" / "o.txt").read_text() == "x\n"


# -- symlinks named on the command line ---------------------------------------------------
def test_a_symlink_given_on_the_command_line_keeps_its_own_name(vault_cli: Cli) -> None:
    cli = vault_cli
    write(cli.cwd / "rel" / "target.txt", "t\n")
    os.symlink("rel/target.txt", cli.cwd / "mylink")
    cli.ok("upload", "mylink")
    assert cli.ok("ls").out.split() == ["mylink"]
    assert cli.ok("download", "mylink", "-o", "-").stdout == b"t\n"  # followed: its content is stored
    write(cli.cwd / "real" / "a.txt", "a\n")
    os.symlink("real", cli.cwd / "sublink")
    cli.ok("upload", "sublink", "--recursive")
    cli.ok("upload", "sublink/", "--recursive")
    assert cli.ok("ls").out.split() == ["mylink", "sublink/a.txt"]
    cli.ok("upload", ".", "--recursive", "--exclude", "*link")  # "." is still named after the folder
    assert "work/real/a.txt" in cli.ok("ls").out.split()


# -- deep vault paths ---------------------------------------------------------------------
def test_a_deep_path_restores_without_recursion(vault_cli: Cli, tmp_path: Path) -> None:
    cli = vault_cli
    deep = "d/" * 1000 + "x"
    cli.ok("upload", "-", "--as", deep, input=b"deep\n")
    cli.ok("upload", "-", "--as", "d/e.txt", input=b"e\n")
    out = tmp_path / "deep"
    try:
        cli.ok("download", "d/", "-o", str(out))
        assert (out / deep.removeprefix("d/")).read_bytes() == b"deep\n"
        assert (out / "e.txt").read_bytes() == b"e\n"
    finally:
        _remove_tree(out)


def _remove_tree(root: Path) -> None:
    """``shutil.rmtree`` (and pytest's clean-up of old temporary folders)
    recurses once a level: take a deep tree apart in a loop."""
    stack = [root]
    while stack:
        folder = stack[-1]
        subfolders = []
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(Path(entry.path))
            else:
                os.unlink(entry.path)
        if subfolders:
            stack += subfolders
        else:
            os.rmdir(folder)
            stack.pop()


def test_a_path_too_long_for_the_file_system_fails_that_file_alone(vault_cli: Cli, tmp_path: Path) -> None:
    cli = vault_cli
    cli.ok("upload", "-", "--as", "d/" * 2100 + "x", input=b"deep\n")  # over PATH_MAX (4096) locally
    cli.ok("upload", "-", "--as", "d/e.txt", input=b"e\n")
    out = tmp_path / "deep"
    r = cli("download", "d/", "-o", str(out))
    assert r.code == 8, r.stderr
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
    assert "too long" in r.stderr
    assert (out / "e.txt").read_bytes() == b"e\n"
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != "e.txt"]
    cli.ok("upload", "-", "--as", "f/" * 2100 + "x", input=b"deep\n")
    assert_one_line_error(cli("download", "f/", "-o", str(tmp_path / "f")), 2)  # alone: refused, not a bug (1)


# -- audit export -o ------------------------------------------------------------------------
def test_audit_export_to_an_unwritable_target_is_a_usage_error(vault_cli: Cli) -> None:
    cli = vault_cli
    home = cli.env["LIVEDATA_HOME"]
    for target in ("/proc/version", home):
        r = cli("audit", "export", "--format", "csv", "-o", target)
        assert_one_line_error(r, 2)
        assert r.stderr.startswith("livedata: error: ") and target in r.stderr
    assert not [p.name for p in Path(home).parent.iterdir() if p.name.startswith(".livedata-")]
    cli.ok("audit", "export", "--format", "csv", "-o", "trail.csv")
    assert (cli.cwd / "trail.csv").read_text().startswith("time,action,")
    assert (cli.cwd / "trail.csv").stat().st_mode & 0o777 == 0o600  # names in the clear


# -- convert -o -------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_convert_to_an_unwritable_output_names_it(vault_cli: Cli) -> None:
    """The output is checked before any engine runs: the error is the same
    whether or not this machine has a converter for the pair."""
    cli = vault_cli
    write(cli.cwd / "a.txt", "x\n")
    cli.ok("upload", "a.txt")
    for fmt in ("pdf", "md"):
        r = cli("convert", "a.txt", "--to", fmt, "-o", "/proc/version", "--no-store")
        assert_one_line_error(r, 2)
        assert r.stderr.startswith("livedata: error: ") and "/proc/version" in r.stderr
    assert cli.ok("ls").out.split() == ["a.txt"]


def test_a_path_given_twice_is_stored_once_and_stdin_into_a_folder_is_named(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "d.txt", "d")
    r = vault_cli.ok("upload", "d.txt", "d.txt", "--json").json()
    assert r["counts"] == {"new": 1}
    assert len(vault_cli.ok("info", "d.txt", "--json").json()["versions"]) == 1
    r = vault_cli("upload", "-", "--as", "dir/", input=b"x")
    assert_one_line_error(r, 2)
    assert "names a folder" in r.stderr
