"""Crashes and concurrency: a killed process or a second writer never leaves
the vault inconsistent or loses an index row."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Cli, data_objects, write

pytestmark = pytest.mark.subprocess


def _wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3, 0.6, 1.0])
def test_kill_9_during_upload_leaves_vault_consistent(vault_cli: Cli, store_dir: Path, delay: float) -> None:
    content = os.urandom(24 * 1024 * 1024)
    write(vault_cli.cwd / "big.bin", content)
    for i in range(20):
        write(vault_cli.cwd / "many" / f"f{i:02d}", f"small {i}")
    p = vault_cli.popen("upload", "big.bin", "many", "-r", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    # Whatever is listed downloads intact; nothing half-written is listed.
    for row in vault_cli.ok("ls", "--json").json():
        got = vault_cli.ok("download", row["path"], "-o", "-").stdout
        assert got == (content if row["path"] == "big.bin" else (vault_cli.cwd / row["path"]).read_bytes())
    # A rerun completes the job.
    vault_cli.ok("upload", "big.bin", "many", "-r")
    paths = sorted(x["path"] for x in vault_cli.ok("ls", "--json").json())
    assert paths == ["big.bin"] + [f"many/f{i:02d}" for i in range(20)]
    assert vault_cli.ok("download", "big.bin", "-o", "-").stdout == content
    vault_cli.ok("verify", "--data")


def test_kill_9_during_download_leaves_no_partial_file(vault_cli: Cli) -> None:
    content = os.urandom(64 * 1024 * 1024)
    write(vault_cli.cwd / "big.bin", content)
    vault_cli.ok("upload", "big.bin")
    (vault_cli.cwd / "big.bin").unlink()
    out = vault_cli.cwd / "restored.bin"
    p = vault_cli.popen("download", "big.bin", "-o", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: any(vault_cli.cwd.glob(".restored.bin*")) or p.poll() is not None)
    p.send_signal(signal.SIGKILL)
    p.wait()
    if out.exists():  # the download won the race: then it must be complete
        assert out.read_bytes() == content
    vault_cli.ok("download", "big.bin", "-o", str(out))
    assert out.read_bytes() == content


def test_two_uploads_at_once_lose_nothing(vault_cli: Cli) -> None:
    for side in ("a", "b"):
        for i in range(150):
            write(vault_cli.cwd / side / f"{i:03d}.txt", f"{side}{i}")
    procs = [
        vault_cli.popen("upload", side, "-r", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for side in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = vault_cli.ok("ls", "--json").json()
    assert len(rows) == 300
    # The index agrees with a rebuild from the store alone.
    vault_cli.ok("sync", "--rebuild")
    assert len(vault_cli.ok("ls", "--json").json()) == 300


def test_concurrent_uploads_of_same_path_keep_every_version(vault_cli: Cli, store_dir: Path) -> None:
    for i in range(4):
        write(vault_cli.cwd / f"v{i}" / "same.txt", f"content {i}")
    procs = [
        vault_cli.popen("upload", f"v{i}/same.txt", "--as", "same.txt", stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    info = vault_cli.ok("info", "same.txt", "--json").json()
    assert len(info["versions"]) == 4
    assert len(data_objects(store_dir)) == 4


def test_ctrl_c_exits_130_with_one_line_and_stores_nothing(vault_cli: Cli) -> None:
    p = vault_cli.popen("upload", "-", "--as", "x.bin", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdin is not None and p.stderr is not None
    p.stdin.write(b"partial data")
    p.stdin.flush()
    time.sleep(1.5)  # started and blocked reading stdin
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert err.decode().strip().splitlines() == ["livedata: error: interrupted"]
    assert vault_cli.ok("ls", "--json").json() == []
