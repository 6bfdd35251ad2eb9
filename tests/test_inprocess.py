"""A command run in the test's process gives what the installed command gives as a child
process: exit code, stdout bytes, stderr text; and it leaves the process as it found it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli, Result, assert_one_line_error, write
from livedata_cli.cli.inprocess import run

pytestmark = pytest.mark.subprocess  # each case compares against the real process


def both(cli: Cli, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """The command as a child process and in this process: the same result, returned once."""
    child = Cli(cli.env, cli.cwd, inprocess=False)(*args, input=input, env=env)
    here = Cli(cli.env, cli.cwd, inprocess=True)(*args, input=input, env=env)
    assert (here.code, here.stdout, here.stderr) == (child.code, child.stdout, child.stderr), args
    return here


def test_errors_and_usage_are_the_same(cli: Cli) -> None:
    assert_one_line_error(both(cli, "ls"), 3)  # no vault yet
    assert both(cli, "--version").out.startswith("livedata ")
    assert both(cli, "no-such-command").code == 2
    assert both(cli, "upload").code == 2
    r = both(cli, "--json", "ls")
    assert r.code == 3 and r.json()["exit_code"] == 3


def test_a_session_of_commands_is_the_same(cli: Cli) -> None:
    """init, upload from stdin and a file, ls, info, download to stdout: twice over, once a
    child process and once here, on two homes, with the same outputs (ids aside)."""
    first = cli.env["LIVEDATA_HOME"]
    homes = {False: first, True: first + "-here"}
    results: dict[bool, list[Result]] = {}
    write(cli.cwd / "a.txt", "hello\n")
    for inprocess, home in homes.items():
        c = Cli({**cli.env, "LIVEDATA_HOME": home}, cli.cwd, inprocess=inprocess)
        results[inprocess] = [
            c("init"),
            c("upload", "-", "--as", "notes/in.bin", input=b"\x00\xffbytes\n"),
            c("upload", "a.txt", "--as", "notes/a.txt", "--quiet"),
            c("ls", "notes/"),
            c("download", "notes/in.bin", "-o", "-"),
            c("download", "notes/missing", "-o", "-"),
            c("--json", "ls", "notes/"),
        ]
    for child, here in zip(results[False][:-1], results[True][:-1], strict=True):
        assert here.code == child.code
        if child.code == 0 and not child.stderr:
            assert here.stdout == child.stdout
    docs = [sorted((f["path"], f["size"]) for f in results[k][-1].json()) for k in (False, True)]
    assert docs[0] == docs[1] == [("notes/a.txt", 6), ("notes/in.bin", 8)]
    assert results[True][4].stdout == b"\x00\xffbytes\n"
    assert_one_line_error(results[True][5], 3)
    # the weakened-KDF notice is once per process: a run here is a process of its own
    assert "WARNING" in results[True][0].stderr and "WARNING" in results[False][0].stderr


def test_the_process_is_left_as_it_was(cli: Cli, tmp_path: Path) -> None:
    before_env, before_cwd = dict(os.environ), os.getcwd()
    streams = sys.stdin, sys.stdout, sys.stderr
    config = Path(cli.env["LIVEDATA_HOME"]) / "config.toml"
    write(config, f'[profiles.work]\nstore = "{tmp_path / "elsewhere"}"\njson = true\n')
    o = run(["--profile", "work", "ls"], environ={**cli.env, "EXTRA": "1"}, cwd=tmp_path)
    assert o.code == 3 and '"exit_code": 3' in o.stdout.decode(), o  # the profile's settings held
    assert dict(os.environ) == before_env and os.getcwd() == before_cwd
    assert (sys.stdin, sys.stdout, sys.stderr) == streams


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_any_bytes_through_stdin_and_stdout(cli: Cli, data: bytes) -> None:
    """Bytes from stdin are stored and come back on stdout unchanged, in this process too."""
    here = Cli(cli.env, cli.cwd, inprocess=True)
    if here("ls").code == 3:
        here.ok("init")
    here.ok("upload", "-", "--as", "blob.bin", input=data)
    assert here.ok("download", "blob.bin", "-o", "-").stdout == data


def test_no_thread_outlives_its_command(cli: Cli) -> None:
    """The lock refresher, upload and download pools of a command end with it."""
    import threading

    def ours() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("livedata"))

    before = ours()
    here = Cli(cli.env, cli.cwd, inprocess=True)
    here.ok("init")
    write(here.cwd / "d" / "a.bin", os.urandom(300_000))
    write(here.cwd / "d" / "b.txt", "b\n")
    here.ok("upload", "d", "--recursive")
    here.ok("download", "d/", "-o", str(here.cwd / "back"))
    here.ok("prune")
    assert_one_line_error(here("download", "d/missing", "-o", "-"), 3)
    assert ours() == before
