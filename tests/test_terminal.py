"""livedata as a citizen of the terminal: man pages, completions in real shells,
config profiles and their precedence, doctor, colours, JSON shapes, the wheel.

Commands run in the test's process where a child process shows nothing more
(``Cli.needs_process``); terminals (``run_on_tty``), completion, keyrings and
the JSON tour (which locks the index) are real processes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer

from conftest import PASSPHRASE, Cli, assert_one_line_error, run_on_tty, write
from livedata_cli.cli import app
from livedata_cli.errors import ExitCode

pytestmark = pytest.mark.inprocess

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)


def _command_paths(group: Any = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    group = group or typer.main.get_command(app)
    out = []
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):
            out.extend(_command_paths(cmd, (*prefix, name)))
    return out


# -- man pages -----------------------------------------------------------------------
def test_man_pages_and_completions_are_current() -> None:
    r = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_page_for_every_command_and_the_overview_has_every_section() -> None:
    for path in _command_paths():
        assert (ROOT / "man" / f"livedata-{'-'.join(path)}.1").exists(), path
    page = (ROOT / "man" / "livedata.1").read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS", "CONFIGURATION",
                    "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert f".SH {section}\n" in page, section
    for code in ExitCode:
        assert f".TP\n\\fB{int(code)}\\fR\n" in page, code
    for var in ("LIVEDATA_HOME", "LIVEDATA_PROFILE", "LIVEDATA_PASSPHRASE_FILE", "NO_COLOR"):
        assert f".TP\n\\fB{var}\\fR\n" in page, var


def test_man_pages_render_without_warnings() -> None:
    for page in sorted((ROOT / "man").glob("*.1")):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr.strip(), (page.name, r.stderr)
    text = subprocess.run(
        ["man", "-l", str(ROOT / "man" / "livedata-upload.1")], capture_output=True, text=True,
        env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0"},
    ).stdout
    text = re.sub(".\x08", "", text)  # man's overstrike bold
    assert "livedata upload [OPTIONS] [PATHS...]" in text and "--recursive" in text


def test_readme_lists_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", readme, re.M), code


def test_readme_documents_every_setting() -> None:
    from livedata_cli.settings import SETTINGS

    readme = (ROOT / "README.md").read_text()
    for name in SETTINGS:
        assert re.search(rf"^\| `{name}` \|", readme, re.M), f"README's settings table lacks {name}"


# -- completions in real shells ---------------------------------------------------------
def _shell_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb", "LANG": "C.UTF-8"}


def test_completion_command_prints_the_shipped_scripts(cli: Cli) -> None:
    for shell, name in (("bash", "livedata.bash"), ("zsh", "_livedata"), ("fish", "livedata.fish")):
        assert cli.ok("completion", shell).out == (ROOT / "completions" / name).read_text()
    r = cli("completion", "tcsh")
    assert r.code == 2 and "bash" in r.stderr and r.stdout == b"" and "Traceback" not in r.stderr


def test_bash_completes_commands_and_options(tmp_path: Path) -> None:
    script = f"""
        source {ROOT}/completions/livedata.bash
        complete -p livedata
        COMP_WORDS=(livedata up); COMP_CWORD=1; _livedata_completion; echo "1:${{COMPREPLY[*]}}"
        COMP_WORDS=(livedata upload --); COMP_CWORD=2; _livedata_completion; echo "2:${{COMPREPLY[*]}}"
        COMP_WORDS=(livedata keys a); COMP_CWORD=2; _livedata_completion; echo "3:${{COMPREPLY[*]}}"
        COMP_WORDS=(livedata config get pass); COMP_CWORD=3; _livedata_completion; echo "4:${{COMPREPLY[*]}}"
    """
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=_shell_env(tmp_path))
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines() if line[:2] in {"1:", "2:", "3:", "4:"})
    assert "complete -o default -F _livedata_completion livedata" in r.stdout, r.stdout + r.stderr
    assert lines["1"] == "upload"
    assert {"--as", "--tag", "--recursive", "--exclude", "--json", "--quiet"} <= set(lines["2"].split())
    assert lines["3"] == "add"
    assert lines["4"].split() == ["passphrase_file", "passphrase_command"]


def _zsh(tmp_path: Path, setup: list[str], keys: str) -> str:
    """Type into an interactive zsh on a pseudo-terminal; what it printed after the keys."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(shutil.which("zsh") or "/usr/bin/zsh", ["zsh", "-f", "-i"], {**_shell_env(tmp_path), "PS1": "%% "})
    out = b""

    def read(seconds: float, until: bytes) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        start = len(out)
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return
            if re.search(until, out[start:], re.S):
                return

    try:
        for line in [*setup, "echo READY"]:
            os.write(fd, line.encode() + b"\n")
        read(10, rb"\nREADY\r\n.*% ")  # the output of echo, then the next prompt
        mark = len(out)
        os.write(fd, keys.encode())
        read(10, rb"--quiet" if keys.endswith("--\t") else rb"upload ")
        return out[mark:].decode(errors="replace")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def test_zsh_completes_commands_and_options_from_fpath(tmp_path: Path) -> None:
    fpath = tmp_path / "zfunc"
    fpath.mkdir()
    shutil.copy(ROOT / "completions" / "_livedata", fpath / "_livedata")
    setup = [f"fpath=({fpath} $fpath)", "autoload -Uz compinit && compinit -u -D"]
    assert "livedata upload " in _zsh(tmp_path, setup, "livedata up\t")
    listed = _zsh(tmp_path, setup, "livedata upload --\t")
    assert all(opt in listed for opt in ("--recursive", "--exclude", "--tag", "--quiet")), listed


def test_zsh_completes_after_eval(tmp_path: Path) -> None:
    setup = ["autoload -Uz compinit && compinit -u -D", 'eval "$(livedata completion zsh)"']
    assert "livedata upload " in _zsh(tmp_path, setup, "livedata up\t")


def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    script = f"""
        source {ROOT}/completions/livedata.fish
        echo "== up"; complete -C "livedata up"
        echo "== opts"; complete -C "livedata upload --"
        echo "== shells"; complete -C "livedata completion "
    """
    r = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, env=_shell_env(tmp_path))
    up, opts, shells = (part.strip().splitlines() for part in r.stdout.split("== ")[1:])
    assert [line.split("\t")[0] for line in up[1:]] == ["upload"], r.stdout + r.stderr
    assert {"--recursive", "--exclude", "--tag", "--json"} <= {line.split("\t")[0] for line in opts[1:]}
    assert [line.split("\t")[0] for line in shells[1:]] == ["bash", "fish", "zsh"]


def test_a_tab_imports_nothing_heavy(vault_cli: Cli) -> None:
    env = {**vault_cli.env, "_LIVEDATA_COMPLETE": "complete_bash", "COMP_WORDS": "livedata up", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "livedata_cli"], capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "plain,upload", r.stdout
    loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    heavy = ("keyring", "boto3", "httpx", "fastapi", "rich", "sqlalchemy", "tomllib")
    assert not {m for m in loaded if m.startswith(heavy)}, sorted(m for m in loaded if m.startswith(heavy))


# -- profiles and precedence -------------------------------------------------------------
def _config(cli: Cli) -> Path:
    return Path(cli.env["LIVEDATA_HOME"]) / "config.toml"


def test_json_setting_precedence_flag_env_file_default(vault_cli: Cli) -> None:
    assert vault_cli.ok("lock").out == ""  # default: people's messages on stderr only
    vault_cli.ok("config", "set", "json", "true")
    assert vault_cli.ok("lock").json()["locked"] is True  # the file
    assert vault_cli.ok("lock", env={"LIVEDATA_JSON": "0"}).out == ""  # environment over the file
    assert vault_cli.ok("lock", "--json", env={"LIVEDATA_JSON": "0"}).json()["locked"] is True  # flag over all
    got = vault_cli.ok("config", "get", "json", "--json", env={"LIVEDATA_JSON": "no"}).json()
    assert got == {"key": "json", "value": False, "source": "environment", "where": "LIVEDATA_JSON"}


def test_store_setting_precedence_and_each_profile_is_its_own_vault(cli: Cli, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        cli.ok("--profile", name, "config", "set", "store", str(tmp_path / f"file-{name}"))
    base = Path(cli.env["LIVEDATA_HOME"])
    assert cli.ok("--profile", "a", "init", "--json").json()["store"] == str(tmp_path / "file-a")
    env_store = {"LIVEDATA_STORE": str(tmp_path / "env-b")}
    assert cli.ok("--profile", "b", "init", "--json", env=env_store).json()["store"] == str(tmp_path / "env-b")
    flagged = cli.ok("--profile", "c", "init", "--store", str(tmp_path / "flag-c"), "--json", env=env_store).json()
    assert flagged["store"] == str(tmp_path / "flag-c")
    assert flagged["home"] == str(base / "profiles" / "c")
    # Without a profile: no store setting, the default in the base home.
    assert cli.ok("config", "get", "store", "--json").json() == {
        "key": "store", "value": str(base / "store"), "source": "default", "where": None,
    }
    # Each profile has its own vault; the base home has none.
    write(cli.cwd / "w.txt", "work")
    cli.ok("--profile", "a", "upload", "w.txt")
    assert cli.ok("--profile", "a", "ls").out.split() == ["w.txt"]
    assert cli.ok("ls", env={"LIVEDATA_PROFILE": "a"}).out.split() == ["w.txt"]
    assert cli.ok("--profile", "b", "ls").out == ""
    assert_one_line_error(cli("ls"), 3)


def test_profile_home_setting_and_unknown_profiles(cli: Cli, tmp_path: Path) -> None:
    cli.ok("--profile", "away", "config", "set", "home", "elsewhere")
    cli.ok("--profile", "away", "init")
    assert (Path(cli.env["LIVEDATA_HOME"]) / "elsewhere" / "vault.json").exists()
    r = cli("--profile", "nosuch", "ls")
    assert_one_line_error(r, 2)
    assert str(_config(cli)) in r.stderr and "nosuch" in r.stderr and "away" in r.stderr
    assert_one_line_error(cli("ls", env={"LIVEDATA_PROFILE": "nosuch"}), 2)
    assert_one_line_error(cli("--profile", "../x", "ls"), 2)
    # The flag wins over the variable.
    assert cli.ok("--profile", "away", "config", "get", "home", env={"LIVEDATA_PROFILE": "nosuch"}).out.strip().endswith("elsewhere")
    # home only makes sense for a profile.
    assert_one_line_error(cli("config", "set", "home", "x"), 2)


def test_passphrase_file_from_a_profile_and_the_environment_wins(cli: Cli) -> None:
    secret = write(Path(cli.env["LIVEDATA_HOME"]) / "pass.txt", PASSPHRASE + "\n")
    secret.chmod(0o600)
    cli.ok("--profile", "cron", "config", "set", "passphrase_file", "pass.txt")  # relative to the file
    cli.ok("--profile", "cron", "config", "set", "no_keyring", "true")
    no_pass = {"LIVEDATA_PASSPHRASE": None, "LIVEDATA_NO_KEYRING": None}
    cli.ok("--profile", "cron", "init", env=no_pass)
    write(cli.cwd / "c.txt", "cron job")
    cli.ok("--profile", "cron", "upload", "c.txt", env=no_pass)
    doctor = cli.ok("--profile", "cron", "doctor", "--json", env=no_pass).json()
    keyring = next(c for c in doctor["checks"] if c["name"] == "keyring")
    assert "LIVEDATA_PASSPHRASE_FILE" in keyring["details"]["fallback"] and "config file" in keyring["details"]["fallback"]
    # The environment beats the profile: a wrong passphrase there is used, and fails.
    r = cli("--profile", "cron", "download", "c.txt", "-o", "-", env={**no_pass, "LIVEDATA_PASSPHRASE": "wrong"})
    assert_one_line_error(r, 4)


@pytest.mark.parametrize(
    "text,line,words",
    [
        ('store = "/v"\n\n# comment\nstor = "/typo"\n', 4, "unknown setting 'stor'"),
        ("json = maybe\n", 1, "Invalid value"),
        ('quiet = "yes"\n', 1, "'quiet' must be true or false"),
        ('[profiles.work]\nstore = "/w"\nfoo = 1\n', 3, "unknown setting 'foo' in profile 'work'"),
        ('home = "/h"\n', 1, "only valid in a profile"),
        ("[colours]\nfancy = 1\n", 1, "unknown setting 'colours'"),
        ('[profiles.x]\npassphrase_file = "f"\npassphrase_command = "c"\n', 3, "set only one"),
        ('store = ""\n', 1, "non-empty string"),
    ],
)
def test_config_errors_name_the_file_and_line(cli: Cli, text: str, line: int, words: str) -> None:
    _config(cli).parent.mkdir(parents=True)
    _config(cli).write_text(text)
    r = cli("ls")
    assert_one_line_error(r, 2)
    assert f"{_config(cli)}:{line}: " in r.stderr and words in r.stderr, r.stderr


def test_a_broken_config_stops_every_command_but_doctor_reports_it(vault_cli: Cli) -> None:
    _config(vault_cli).write_text('quiet = true\nstor = "/typo"\n')
    for args in (["ls"], ["config", "list"], ["upload", "--help"], ["--profile", "x", "config", "set", "quiet", "true"]):
        r = vault_cli(*args)
        assert_one_line_error(r, 2)
        assert f"{_config(vault_cli)}:2: unknown setting 'stor'" in r.stderr, r.stderr
    r = vault_cli("doctor", "--json")
    assert r.code == 2 and r.json()["checks"][0]["status"] == "fail" and "'stor'" in r.json()["checks"][0]["message"]
    assert "livedata: error: doctor: config: " in r.stderr
    vault_cli.ok("--version")


def test_config_set_keeps_comments_and_writes_0600(cli: Cli) -> None:
    path = _config(cli)
    path.parent.mkdir(parents=True)
    path.write_text("# my settings\nquiet = false  # chatty\n\n[profiles.work]\n# the office NAS\nstore = \"/nas\"\n")
    cli.ok("config", "set", "store", "/usb")
    cli.ok("--profile", "work", "config", "set", "no_keyring", "yes")
    cli.ok("--profile", "work", "config", "set", "store", "/nas2")
    cli.ok("config", "unset", "quiet")
    assert path.read_text() == (
        '# my settings\nstore = "/usb"\n\n[profiles.work]\n# the office NAS\nstore = "/nas2"\nno_keyring = true\n'
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cli.ok("--profile", "new", "config", "set", "passphrase_command", 'pass show "live data"')
    assert cli.ok("--profile", "new", "config", "get", "passphrase_command").out == 'pass show "live data"\n'
    listing = cli.ok("--profile", "work", "config", "list", "--json").json()
    assert listing["profiles"] == ["new", "work"] and listing["profile"] == "work"
    assert listing["settings"]["store"] == {"value": "/nas2", "source": "config", "where": f"{path}:6"}
    assert_one_line_error(cli("config", "get", "passphrase_file"), 3)
    assert_one_line_error(cli("config", "set", "json", "maybe"), 2)
    assert_one_line_error(cli("config", "set", "colour", "1"), 2)
    assert_one_line_error(cli("config", "get", "colour"), 2)


def test_config_file_lives_in_xdg_config_without_livedata_home(cli: Cli, tmp_path: Path) -> None:
    env = {"LIVEDATA_HOME": None, "HOME": str(tmp_path / "u"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    cli.ok("config", "set", "quiet", "true", env=env)
    assert (tmp_path / "xdg" / "livedata" / "config.toml").read_text() == "quiet = true\n"
    info = cli.ok("config", "list", "--json", env=env).json()
    assert info["file"] == str(tmp_path / "xdg" / "livedata" / "config.toml")
    assert info["settings"]["store"]["value"] == str(tmp_path / "data" / "livedata" / "store")


# -- doctor ------------------------------------------------------------------------
def test_doctor_on_a_healthy_vault(vault_cli: Cli) -> None:
    r = vault_cli.ok("doctor")
    assert [line.split()[1] for line in r.out.splitlines()[:5]] == ["config", "versions", "keyring", "store", "index"]
    data = vault_cli.ok("doctor", "--json").json()
    assert data["ok"] is True and data["exit_code"] == 0
    assert {c["name"]: c["status"] for c in data["checks"]} == {
        "config": "ok", "versions": "ok", "keyring": "ok", "store": "ok", "index": "ok", "reclaimable": "ok",
    }
    assert set(data["versions"]) >= {"livedata", "python", "cryptography", "sqlite"}
    index = data["checks"][4]["details"]
    assert index["quick_check"] == "ok" and index["pending_migrations"] == [] and index["mode"] == "600"


def test_doctor_without_a_secret_service_names_the_fallback_and_cron(vault_cli: Cli, tmp_path: Path) -> None:
    env = {"LIVEDATA_NO_KEYRING": None, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    keyring = vault_cli.ok("doctor", "--json", env=env).json()["checks"][2]
    assert keyring["status"] == "warn" and keyring["details"]["usable"] is False
    assert "LIVEDATA_PASSPHRASE (from the environment)" in keyring["message"]
    assert "cron" in keyring["hint"] and "LIVEDATA_PASSPHRASE_FILE" in keyring["hint"]
    # No passphrase source at all and no terminal: every key-needing command would exit 4.
    r = vault_cli("doctor", env={**env, "LIVEDATA_PASSPHRASE": None})
    assert r.code == 4 and "no passphrase source" in r.out and "LIVEDATA_PASSPHRASE_FILE" in r.out
    assert r.stderr.startswith("livedata: error: doctor: keyring: ") and len(r.stderr.splitlines()) == 1
    both = {**env, "LIVEDATA_PASSPHRASE_COMMAND": "echo x"}
    assert vault_cli("doctor", env=both).code == 2


@pytest.mark.keyring
def test_doctor_with_gnome_keyring_reports_it_usable(cli: Cli, secret_service: dict[str, str]) -> None:
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    keyring = cli.ok("doctor", "--json", env={**env, "LIVEDATA_PASSPHRASE": None}).json()["checks"][2]
    assert keyring["status"] == "ok", keyring
    assert keyring["details"]["usable"] is True and keyring["details"]["key_cached"] is True
    assert "SecretService" in keyring["details"]["backend"]


def test_doctor_exit_codes_for_what_is_wrong(cli: Cli) -> None:
    r = cli("doctor")  # a fresh machine: nothing is wrong yet, and it says what to do first
    assert r.code == 0 and "livedata init" in r.out and "no vault set up" in r.out
    cli.ok("init")
    index = Path(cli.env["LIVEDATA_HOME"]) / "index.sqlite"
    data = bytearray(index.read_bytes())
    data[100:4096] = os.urandom(4096 - 100)  # the schema page
    index.write_bytes(bytes(data))
    r = cli("doctor", "--json")
    assert r.code == 5 and r.json()["checks"][4]["status"] == "fail" and "sync --rebuild" in r.json()["checks"][4]["hint"]
    shutil.rmtree(Path(cli.env["LIVEDATA_HOME"]) / "store" / "keys")
    assert cli("doctor").code == 4  # the store has no key slot left: nothing opens the vault


# -- output conventions ------------------------------------------------------------
def _on_tty(args: list[str], env: dict[str, str], cwd: Path) -> str:
    return run_on_tty(args, env, cwd)[1]


def test_colours_only_on_a_terminal_and_never_with_no_color(vault_cli: Cli) -> None:
    env = {k: v for k, v in vault_cli.env.items() if k != "NO_COLOR"}
    assert "\x1b[32m" in _on_tty(["doctor"], env, vault_cli.cwd)
    assert "\x1b[" not in _on_tty(["doctor"], {**env, "NO_COLOR": "1"}, vault_cli.cwd)
    assert "\x1b[" not in vault_cli.ok("doctor", env={"NO_COLOR": None}).out


def test_errors_go_to_stderr_and_json_still_gets_its_document(cli: Cli) -> None:
    r = cli("ls", "--json")
    assert_one_line_error(r, 3)
    doc = r.json()  # one document on stdout, with the error in it, for scripts
    assert doc["exit_code"] == 3 and "livedata init" in doc["error"]
    r = cli("ls")
    assert_one_line_error(r, 3)
    assert r.stdout == b""


def test_no_arguments_shows_a_short_overview(cli: Cli) -> None:
    r = cli()
    text = r.out + r.stderr
    assert "Usage: livedata" in text and "Commands:" in text and "Traceback" not in text
    assert len(text.splitlines()) < 80


# -- JSON shapes -----------------------------------------------------------------------
def _documented() -> list[tuple[str, Any]]:
    text = (ROOT / "docs" / "json.md").read_text()
    out = []
    for m in re.finditer(r"^### `(livedata [^`]+)`\n(.*?)(?=^### |\Z)", text, re.M | re.S):
        block = re.search(r"```json\n(.*?)\n```", m.group(2), re.S)
        out.append((m.group(1), json.loads(block.group(1)) if block else None))
    return out


def _same_keys(doc: Any, got: Any, where: str) -> None:
    if isinstance(doc, dict) and set(doc) == {"*"}:
        assert isinstance(got, dict), where
        return
    if isinstance(doc, dict):
        assert isinstance(got, dict) and set(got) == set(doc), (where, sorted(set(got) ^ set(doc) if isinstance(got, dict) else got))
        for key in doc:
            _same_keys(doc[key], got[key], f"{where}.{key}")
    elif isinstance(doc, list):
        assert isinstance(got, list), where
        if doc and got:
            _same_keys(doc[0], got[0], f"{where}[0]")


def test_every_command_has_a_documented_json_shape() -> None:
    lines = [cmd.split()[1:] for cmd, _ in _documented()]
    missing = [" ".join(p) for p in _command_paths() if not any(tuple(w[: len(p)]) == p for w in lines)]
    assert not missing, f"document these in docs/json.md: {missing}"


@pytest.mark.subprocess  # it runs ``lock --index``, which the index of a process still open refuses
@pytest.mark.parametrize("half", [0, 1])
def test_json_output_has_the_documented_keys(cli: Cli, half: int) -> None:
    """The documented commands in order, in two halves run side by side (the
    second half starts from a vault of its own, from the audit section on)."""
    write(cli.cwd / "a.txt", "hello world\n")
    env = {"LIVEDATA_NEW_PASSPHRASE": PASSPHRASE, "LIVEDATA_ADMIN_PASSWORD": "admin-password-1"}
    documented = _documented()
    split = next(i for i, (command, _) in enumerate(documented) if command.startswith("livedata audit"))
    if half:
        cli.ok("init")
    last: dict[str, str] = {}
    ran = 0
    for command, shape in documented[split:] if half else documented[:split]:
        if shape is None:
            continue
        for key, value in last.items():
            command = command.replace(f"<{key}>", value)
        r = cli(*command.split()[1:], env=env)
        assert r.code == 0, (command, r.stderr)
        got = r.json()
        _same_keys(shape, got, command)
        if isinstance(got, dict) and isinstance(got.get("slot"), str):
            last["slot"] = got["slot"]
        ran += 1
    assert ran >= 10


# -- packaging -----------------------------------------------------------------------
def test_the_wheel_installs_man_pages_and_completions(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("livedata-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/")[0] for n in names if ".data/" in n) + "/data/"
    for page in (ROOT / "man").glob("*.1"):
        assert f"{data}share/man/man1/{page.name}" in names, page.name
    for path in ("share/bash-completion/completions/livedata", "share/zsh/site-functions/_livedata",
                 "share/fish/vendor_completions.d/livedata.fish"):
        assert data + path in names, path
    assert "livedata_cli/cli/completion.py" in names
