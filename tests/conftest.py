"""Shared fixtures: every test gets its own LIVEDATA_HOME and a weakened KDF.

``cli`` runs the installed ``livedata`` command as a real subprocess, so exit
codes, the stdout/stderr split and environment handling are what users get.
In a module or test marked ``inprocess`` it runs the command in the test's own
process instead (``livedata_cli.cli.inprocess``: same code, streams, environment
and working folder, without an interpreter start), except where only a real
process shows the behaviour (see ``Cli.needs_process``); a test marked
``subprocess`` always gets the real process.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Property tests are judged on what they find, not on how fast an example runs: on a
# shared 2-core machine under -n 2 one example's first call (an import, a cold cache)
# can take longer than hypothesis's default 200 ms deadline.  Speed goals go to bench/.
settings.register_profile("livedata", deadline=None)
settings.load_profile("livedata")

PASSPHRASE = "correct horse battery staple"
# The marker without which livedata refuses LIVEDATA_TESTONLY_WEAKEN_KDF: it names this test run.
TEST_RUN = f"livedata-tests-{os.getpid()}"


def livedata_exe() -> list[str]:
    exe = shutil.which("livedata", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "livedata_cli"]


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout.decode()

    def json(self) -> Any:
        return json.loads(self.stdout)


# Variables whose effect needs a process of its own: pause points and test clocks that
# block or outlive the command, completion, and a keyring backend chosen once per process.
PROCESS_VARIABLES = ("_LIVEDATA_COMPLETE", "DBUS_SESSION_BUS_ADDRESS", "LIVEDATA_TESTONLY_PAUSE_AT")
# Commands that serve, mount or wait: never in the test's process.
PROCESS_COMMANDS = {"server", "mount", "completion"}
IN_PROCESS_VARIABLES = {"LIVEDATA_TESTONLY_WEAKEN_KDF", "LIVEDATA_TESTONLY_RUN", "LIVEDATA_TESTONLY_NOW"}


class Cli:
    """Runs ``livedata`` with this test's environment: in a child process, or in this
    process when ``inprocess`` is set and the command allows it."""

    def __init__(self, env: dict[str, str], cwd: Path, *, inprocess: bool = False) -> None:
        self.env = env
        self.cwd = cwd
        self.inprocess = inprocess

    @staticmethod
    def needs_process(args: Sequence[str], env: dict[str, str]) -> bool:
        """Whether only a real process runs this command as a user's would."""
        if any(a in PROCESS_COMMANDS for a in args[:3]) or any(v in env for v in PROCESS_VARIABLES):
            return True
        if env.get("LIVEDATA_NO_KEYRING") != "1":
            return True  # keyring picks and keeps its backend per process
        return any(k.startswith("LIVEDATA_TESTONLY_") and k not in IN_PROCESS_VARIABLES for k in env)

    def __call__(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Result:
        full_env = {**self.env, **(env or {})}
        full_env = {k: v for k, v in full_env.items() if v is not None}
        if self.inprocess and not self.needs_process(args, full_env):
            from livedata_cli.cli.inprocess import run

            o = run(args, stdin=input or b"", environ=full_env, cwd=self.cwd)
            return Result(o.code, o.stdout, o.stderr)
        p = subprocess.run(
            [*livedata_exe(), *args],
            input=input if input is not None else b"",
            capture_output=True,
            env=full_env,
            cwd=self.cwd,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout, p.stderr.decode())

    def ok(self, *args: str, **kw: Any) -> Result:
        r = self(*args, **kw)
        assert r.code == 0, f"livedata {' '.join(args)} -> {r.code}\n{r.stderr}"
        return r

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("preexec_fn", as_from_a_shell)
        return subprocess.Popen([*livedata_exe(), *args], env=self.env, cwd=self.cwd, **kw)


def as_from_a_shell() -> None:
    """In a child before it runs ``livedata``: the signal handlers and mask a
    shell gives a command, whatever this test process had (a child inherits
    an ignored or blocked SIGINT, and would never see its Ctrl-C)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def assert_one_line_error(r: Result, code: int) -> None:
    """A failed command: the documented code, one line on stderr, no traceback."""
    assert r.code == code, (r.code, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines, "expected an error message"
    assert all(line.startswith("livedata:") for line in lines), r.stderr
    assert "Traceback" not in r.stderr


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@pytest.fixture(autouse=True)
def signals_as_found() -> Iterator[None]:
    """Each test leaves this process's signal handlers and mask as it found them:
    children inherit an ignored or blocked signal, and a later test's
    ``livedata`` would then never see its Ctrl-C."""
    handlers = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for sig, handler in handlers.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def livedata_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    home = tmp_path / "home"
    values = {
        "LIVEDATA_HOME": str(home),
        "LIVEDATA_PASSPHRASE": PASSPHRASE,
        "LIVEDATA_TESTONLY_WEAKEN_KDF": "1",
        "LIVEDATA_TESTONLY_RUN": TEST_RUN,
        "LIVEDATA_NO_KEYRING": "1",
    }
    for var in ("LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND", "LIVEDATA_NEW_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def cli(request: pytest.FixtureRequest, tmp_path: Path, livedata_env: dict[str, str]) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(livedata_env)
    work = tmp_path / "work"
    work.mkdir()
    node = request.node
    inprocess = node.get_closest_marker("inprocess") is not None and node.get_closest_marker("subprocess") is None
    return Cli(env, work, inprocess=inprocess)


@pytest.fixture
def vault_cli(cli: Cli) -> Cli:
    """A CLI with a freshly initialised vault in its home."""
    cli.ok("init")
    return cli


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The ``livedata server`` that api-kind vaults of this test process share (store_kinds.py)."""
    from store_kinds import SharedServer

    shared = SharedServer(tmp_path_factory.mktemp("api-server"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def secret_service(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A D-Bus session bus with an unlocked gnome-keyring on it, for this test only
    (the environment variables that point a child process at it)."""
    home = tmp_path / "desktop-home"
    (home / ".cache").mkdir(parents=True)
    out = subprocess.check_output(
        ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"], text=True
    ).split("\n")
    address, bus_pid = out[0].strip(), int(out[1])
    env = {"DBUS_SESSION_BUS_ADDRESS": address, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert daemon.stdin is not None
    daemon.stdin.write(b"test-login-password")
    daemon.stdin.close()
    time.sleep(0.5)  # the daemon claims its bus name
    try:
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        subprocess.run(["kill", str(bus_pid)], check=False)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "store"


@pytest.fixture
def open_vault() -> Iterator[Any]:
    """The library-level vault of the test's home (after ``init``)."""
    from livedata_cli.keys.unlock import Unlocker
    from livedata_cli.vault.core import Vault

    opened: list[Vault] = []

    def factory() -> Vault:
        v = Vault.open(Unlocker(use_keyring=False))
        opened.append(v)
        return v

    yield factory
    for v in opened:
        v.close()


def data_objects(store: Path) -> list[Path]:
    return sorted(p for p in (store / "data").rglob("*") if p.is_file())


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def run_on_tty(
    args: list[str], env: dict[str, str], cwd: Path, answers: Sequence[str] = (), timeout: float = 30
) -> tuple[int, str]:
    """Run livedata with a pseudo-terminal as its controlling terminal, answering prompts."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(cwd)
        exe = livedata_exe()
        os.execve(exe[0], [*exe, *args], env)
    output = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    answered = 0  # prompts are looked for only in output after the last answer
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and output[answered:].rstrip().endswith(b":"):
                os.write(fd, pending.pop(0).encode() + b"\n")
                answered = len(output)
    if time.monotonic() >= deadline:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


# The modules whose tests take longest (CPU-seconds measured on the 2-core machine),
# heaviest first.  They run first, so that under ``-n 2 --dist worksteal`` (make test)
# the last minutes are short tests shared by both workers, not one long test on one
# worker while the other waits.  A module not listed keeps its place after them.
RUN_FIRST = (
    "test_vault_state",
    "test_concurrency",
    "test_housekeeping",
    "test_server_security",
    "test_server_uploads",
    "test_store_packs",
    "test_faults",
    "test_audit_compaction",
    "test_api_store",
    "test_net_faults",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each module keeps its order
