"""A Tab completes vault paths from the index, and neither a Tab nor --version loads the command tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Cli, livedata_exe, write

pytestmark = pytest.mark.inprocess

ROOT = Path(__file__).resolve().parent.parent


def _vault_with_files(cli: Cli) -> None:
    write(cli.cwd / "photos" / "2026" / "a.jpg", "a")
    write(cli.cwd / "photos" / "b.jpg", "b")
    write(cli.cwd / "report.pdf", "r")
    write(cli.cwd / "gone.txt", "g")
    cli.ok("upload", "photos", "--recursive", "--as", "photos/")
    cli.ok("upload", "report.pdf", "gone.txt")
    cli.ok("rm", "gone.txt")


def _bash(cli: Cli, *lines: str) -> dict[str, str]:
    script = "\n".join([f"source {ROOT}/completions/livedata.bash", *lines])
    env = {**cli.env, "PATH": f"{Path(livedata_exe()[0]).parent}:/usr/bin:/bin", "TERM": "dumb"}
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env)
    return dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)


def test_bash_completes_vault_paths_folder_by_folder(vault_cli: Cli) -> None:
    _vault_with_files(vault_cli)
    got = _bash(
        vault_cli,
        'COMP_WORDS=(livedata download ""); COMP_CWORD=2; _livedata_completion; echo "1:${COMPREPLY[*]}"',
        "COMP_WORDS=(livedata download ph); COMP_CWORD=2; _livedata_completion; echo \"2:${COMPREPLY[*]}\"",
        "COMP_WORDS=(livedata download photos/); COMP_CWORD=2; _livedata_completion; echo \"3:${COMPREPLY[*]}\"",
        "COMP_WORDS=(livedata share rep); COMP_CWORD=2; _livedata_completion; echo \"4:${COMPREPLY[*]}\"",
        "COMP_WORDS=(livedata tag report.pdf ''); COMP_CWORD=3; _livedata_completion; echo \"5:${COMPREPLY[*]}\"",
        "COMP_WORDS=(livedata download --output ''); COMP_CWORD=3; _livedata_completion; echo \"6:${COMPREPLY[*]}\"",
    )
    assert got["1"].split() == ["photos/", "report.pdf"]  # the trashed file is not offered
    assert got["2"] == "photos/"
    assert got["3"].split() == ["photos/2026/", "photos/b.jpg"]
    assert got["4"] == "report.pdf"  # `share REF` is `share create REF`
    assert got["5"] == ""  # a tag: nothing offered, bash falls back to file names
    assert got["6"] == ""  # an option's value: a local path


def test_paths_of_a_profiles_vault(cli: Cli) -> None:
    cli.ok("--profile", "work", "config", "set", "quiet", "false")  # makes the profile
    cli.ok("--profile", "work", "init")
    write(cli.cwd / "plan.txt", "p")
    cli.ok("--profile", "work", "upload", "plan.txt")
    got = _bash(
        cli,
        "COMP_WORDS=(livedata --profile work info pl); COMP_CWORD=4; _livedata_completion; echo \"1:${COMPREPLY[*]}\"",
        "COMP_WORDS=(livedata info pl); COMP_CWORD=2; _livedata_completion; echo \"2:${COMPREPLY[*]}\"",
    )
    assert got["1"] == "plan.txt"
    assert got["2"] == ""  # the base home has no vault


def _modules_after(args: list[str], env: dict[str, str]) -> set[str]:
    code = (
        "import sys, io, contextlib\n"
        f"sys.argv = ['livedata', *{args!r}]\n"
        "from livedata_cli._start import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main()\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return set(r.stdout.split())


def test_version_and_a_tab_load_no_command_tree(vault_cli: Cli) -> None:
    _vault_with_files(vault_cli)
    heavy = {"typer", "rich", "livedata_cli.cli", "livedata_cli.vault.core", "boto3", "httpx", "cryptography"}
    assert not heavy & _modules_after(["--version"], vault_cli.env)
    tab = {**vault_cli.env, "_LIVEDATA_COMPLETE": "complete_bash", "COMP_WORDS": "livedata download ph",
           "COMP_CWORD": "2"}
    assert not heavy & _modules_after([], tab)
    r = subprocess.run(livedata_exe(), env=tab, capture_output=True, text=True)
    assert r.stdout == "plain,photos/\n"
    assert vault_cli.ok("--version").out.startswith("livedata ")


def test_ls_escapes_control_characters_and_null_gives_them_raw(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "x.txt", "x")
    evil = "evil\x1b]0;pwned\x07\nname.txt"
    vault_cli.ok("upload", "x.txt", "--as", evil)
    vault_cli.ok("upload", "x.txt", "--as", "plain.txt")
    for args in (["ls"], ["ls", "--long"]):
        out = vault_cli.ok(*args).out
        assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07\\nname.txt" in out, args
        assert len(out.splitlines()) == 2
    raw = vault_cli.ok("ls", "-0").stdout
    assert raw.split(b"\0") == [evil.encode(), b"plain.txt", b""]
