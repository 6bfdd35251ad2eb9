"""Real ``livedata`` processes stopped at a chosen stage (``LIVEDATA_TESTONLY_PAUSE_AT``,
see livedata_cli/vault/store_locking.py: ``pause_point``) and resumed with SIGCONT, or
killed there with SIGKILL: races and crashes hit the same spot every run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import Cli, livedata_exe


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def wait_stopped(p: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the process has stopped itself at its pause point."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(p.pid) == "T":
            return
        if p.poll() is not None:
            raise AssertionError(f"the paused command ended ({p.returncode}) before its pause point")
        time.sleep(0.02)
    raise AssertionError("the command never reached its pause point")


def start_paused(cli: Cli, args: list[str], stage: str, *, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    """``livedata ARGS`` run until it stops at ``stage``."""
    full = {**cli.env, **(env or {}), "LIVEDATA_TESTONLY_PAUSE_AT": stage}
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    p = subprocess.Popen([*livedata_exe(), *args], env=full, cwd=cli.cwd, **kw)
    wait_stopped(p)
    return p


def kill_at(cli: Cli, args: list[str], stage: str, **kw: Any) -> None:
    """``livedata ARGS`` killed with SIGKILL at ``stage``."""
    p = start_paused(cli, args, stage, **kw)
    p.kill()
    os.kill(p.pid, signal.SIGCONT) if p.poll() is None else None
    p.wait(timeout=30)


def run_against_paused(
    paused_cli: Cli, paused_args: list[str], stage: str, other_cli: Cli, other_args: list[str], tmp: Path
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """Start ``paused_args`` stopped at ``stage``, run ``other_args`` against it
    (until it ends or says it waits for the lock), resume; both results."""
    out1, err1, out2, err2 = (tmp / n for n in ("o1", "e1", "o2", "e2"))
    with open(out1, "wb") as o1, open(err1, "wb") as e1:
        paused = start_paused(paused_cli, paused_args, stage, stdout=o1, stderr=e1)
    try:
        with open(out2, "wb") as o2, open(err2, "wb") as e2:
            other = other_cli.popen(*other_args, stdout=o2, stderr=e2)
        deadline = time.monotonic() + 60
        while other.poll() is None and time.monotonic() < deadline:
            if b"waiting for the vault lock" in err2.read_bytes():
                break
            time.sleep(0.02)
        os.kill(paused.pid, signal.SIGCONT)
        paused.wait(timeout=120)
        other.wait(timeout=120)
    finally:
        if paused.poll() is None:
            os.kill(paused.pid, signal.SIGCONT)
            paused.kill()
    return (
        (paused.returncode, out1.read_text(), err1.read_text()),
        (other.returncode, out2.read_text(), err2.read_text()),
    )
