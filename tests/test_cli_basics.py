"""The command line as a tool: help everywhere, fast start-up, a terminal prompt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import Cli, livedata_exe, run_on_tty
from livedata_cli.cli import app

pytestmark = pytest.mark.inprocess


def _commands(group: typer.main.TyperGroup | None = None, prefix: str = "") -> list[tuple[str, object]]:
    group = group or typer.main.get_command(app)  # type: ignore[assignment]
    out = []
    for name, cmd in group.commands.items():  # type: ignore[union-attr]
        out.append((prefix + name, cmd))
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, prefix + name + " "))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("name,cmd", _commands(), ids=[n for n, _ in _commands()])
def test_every_command_and_option_has_help(name: str, cmd: object) -> None:
    assert (getattr(cmd, "help", None) or "").strip(), f"{name} has no help"
    if not hasattr(cmd, "commands"):
        assert "Example:" in cmd.help, f"{name} help has no example"  # type: ignore[attr-defined]
    for param in cmd.params:  # type: ignore[attr-defined]
        if isinstance(param, typer.core.TyperOption) or param.param_type_name == "option":
            assert (param.help or "").strip(), f"{name} {param.opts} has no help"


def test_no_arguments_shows_overview(cli: Cli) -> None:
    r = cli()
    assert r.code in (0, 2)
    assert "Usage" in r.out + r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args", [["upload", "--bogus"], ["download"], ["bogus-command"], ["upload", "x", "--jobs", "zero"]]
)
def test_usage_errors_are_one_line(cli: Cli, args: list[str]) -> None:
    from conftest import assert_one_line_error

    r = cli(*args)
    assert_one_line_error(r, 2)
    assert "--help" in r.stderr


def test_python_dash_m(cli: Cli) -> None:
    r = subprocess.run([sys.executable, "-m", "livedata_cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("livedata ")


def test_start_up_imports_nothing_heavy(vault_cli: Cli) -> None:
    """--version, --help and ls must not load the keyring, boto3, httpx or the server."""
    heavy = ("keyring", "boto3", "botocore", "httpx", "fastapi", "argon2", "rich.progress")
    for args in (["--version"], ["--help"], ["ls"], ["search", "x"]):
        r = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "livedata_cli", *args],
            capture_output=True, text=True, env=vault_cli.env, cwd=vault_cli.cwd,
        )
        assert r.returncode == 0, r.stderr
        loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
        assert not {m for m in loaded if m.startswith(heavy)}, (args, sorted(m for m in loaded if m.startswith(heavy)))


def test_the_api_client_loads_neither_httpx_own_tool_nor_a_ca_bundle_for_plain_http() -> None:
    """httpx's package would import its command-line tool (rich, pygments) and
    its client would load the CA bundle: neither is needed to talk to a server
    over plain http, and together they cost every API command tens of ms."""
    code = (
        "import ssl, sys\n"
        "from livedata_cli.remote.client import Client\n"
        "plain, tls = Client('http://127.0.0.1:9'), Client('https://vault.example')\n"
        "ctx = lambda c: c.http._transport._pool._ssl_context\n"
        "print(ctx(plain).verify_mode == ssl.CERT_NONE, ctx(tls).verify_mode == ssl.CERT_REQUIRED,\n"
        "      ctx(tls).check_hostname, sorted(m for m in sys.modules if m.startswith(('rich', 'pygments'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True", "True", "[]"]


def test_init_on_a_terminal_asks_twice(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "LIVEDATA_PASSPHRASE"}
    code, out = run_on_tty(["init"], env, cli.cwd, ["tty secret", "tty secret"])
    assert code == 0, out
    assert out.count("passphrase") >= 2
    (cli.cwd / "f.txt").write_text("typed")
    code, out = run_on_tty(["upload", "f.txt"], env, cli.cwd, ["tty secret"])
    assert code == 0, out
    code, out = run_on_tty(["upload", "f.txt"], env, cli.cwd, [])
    assert code == 0 and "passphrase" not in out.lower(), out  # unchanged: nothing to unlock, nothing asked
    (cli.cwd / "f.txt").write_text("typed again")
    code, out = run_on_tty(["upload", "f.txt"], env, cli.cwd, ["wrong"])
    assert code == 4 and "Traceback" not in out


def test_init_on_a_terminal_mismatch_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in cli.env.items() if k != "LIVEDATA_PASSPHRASE"}
    code, out = run_on_tty(["init"], env, cli.cwd, ["one", "two"])
    assert code == 2, out
    assert not (tmp_path / "home" / "store" / "config").exists()


def test_no_progress_or_colour_when_not_a_terminal(vault_cli: Cli) -> None:
    (vault_cli.cwd / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    r = vault_cli.ok("upload", "big.bin")
    assert "\x1b[" not in r.stderr and "\r" not in r.stderr


def test_output_into_a_closed_pipe_is_not_an_error(vault_cli: Cli) -> None:
    for i in range(300):
        (vault_cli.cwd / f"file-with-a-longish-name-{i:04d}.txt").write_text(str(i))
    vault_cli.ok("upload", *[f"file-with-a-longish-name-{i:04d}.txt" for i in range(300)])
    r = subprocess.run(
        f"{' '.join(livedata_exe())} ls --long | head -n 1; echo ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=vault_cli.env, cwd=vault_cli.cwd,
    )
    assert r.stdout.splitlines()[-1] == "0", r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
