"""A restore of many small files opens and writes them in forked worker processes
(livedata_cli/vault/restore_workers.py): the same bytes, modes and times; a
member whose key needs more than the vault key (a file password) is opened by
the command's threads; a damaged member fails alone; a full target stops the
batch with exit 7; and ``kill -9`` leaves no worker running and nothing a
rerun does not clear."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import store_kinds
from store_kinds import KindVault
from test_env_errors import CAN_MOUNT, tmpfs

from conftest import Cli, livedata_exe, write
from livedata_cli.vault import restore, restore_workers

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

MANY = restore_workers.MIN_FILES + 20


def _tree(root: Path, n: int = MANY, seed: int = 5) -> dict[str, bytes]:
    rng = random.Random(seed)
    made: dict[str, bytes] = {}
    for i in range(n):
        rel = f"d{i % 5}/f{i:05d}.bin"
        data = rng.randbytes(rng.choice([0, 1, 17, 4096, 9000]))
        path = write(root / rel, data)
        path.chmod(rng.choice([0o600, 0o644, 0o755]))
        os.utime(path, (1_650_000_000 + i, 1_650_000_000 + i))
        made[rel] = data
    return made


def _check(src: Path, out: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data, rel
        assert (out / rel).stat().st_mode == (src / rel).stat().st_mode, rel
        assert (out / rel).stat().st_mtime == (src / rel).stat().st_mtime, rel
    assert [p for p in out.rglob(".livedata-*")] == []


class _Counted:
    """Counts what the command's threads open, and whether workers were started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_threads: list[str] = []
        self.started = 0
        one, start = restore._Engine.one, restore_workers.start

        def counted_one(engine: Any, job: restore.Job, blob: Any) -> Any:
            self.by_threads.append(job.v.path)
            return one(engine, job, blob)

        def counted_start(*a: Any) -> Any:
            self.started += 1
            return start(*a)

        monkeypatch.setattr(restore._Engine, "one", counted_one)
        monkeypatch.setattr(restore_workers, "start", counted_start)


@pytest.mark.inprocess
def test_many_small_files_are_written_by_the_workers_byte_exact(
    kind_vault: KindVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = kind_vault.cli
    src = tmp_path / "src"
    files = _tree(src)
    cli.ok("upload", str(src), "--recursive", "--as", "t/")
    protected = sorted(files)[:3]
    pw = {"LIVEDATA_FILE_PASSWORD": "a file password"}
    for rel in protected:
        cli.ok("password", "set", f"t/{rel}", env=pw)
    counted = _Counted(monkeypatch)
    out = tmp_path / "out"
    r = cli.ok("download", "t/", "-o", str(out), "--json", env=pw)
    assert r.json()["counts"]["downloaded"] >= len(files)  # and the folders
    _check(src, out, files)
    assert counted.started == 1
    # Only the members a file password protects went to the command's threads.
    assert sorted(counted.by_threads) == [f"t/{rel}" for rel in protected]
    # Each file read is in the audit trail, as when the threads write it.
    events = cli.ok("audit", "--json").json()
    downloads = [e["path"] for e in events if e["action"] == "download"]
    assert sorted(downloads) == sorted(f"t/{rel}" for rel in files)


@pytest.mark.inprocess
def test_few_files_start_no_worker(
    vault_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    files = _tree(src, n=20)
    vault_cli.ok("upload", str(src), "--recursive", "--as", "t/")
    counted = _Counted(monkeypatch)
    vault_cli.ok("download", "t/", "-o", str(tmp_path / "out"))
    _check(src, tmp_path / "out", files)
    assert counted.started == 0 and len(counted.by_threads) == 20


@pytest.mark.inprocess
def test_a_damaged_member_among_many_fails_alone(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    vault_cli.ok("upload", str(src), "--recursive", "--as", "t/")
    victim = next(rel for rel, data in files.items() if len(data) == 9000)
    info = vault_cli.ok("info", f"t/{victim}", "--json").json()
    stored = Path(vault_cli.env["LIVEDATA_HOME"]) / "store" / "data"
    obj = next(
        p for p in stored.rglob("*") if p.is_file() and p.name == (info["pack"] or info["object"])
    )
    blob = bytearray(obj.read_bytes())
    blob[info["offset"] + 200] ^= 0x01  # inside the first segment
    obj.write_bytes(bytes(blob))
    r = vault_cli("download", "t/", "-o", str(tmp_path / "out"), "--json")
    assert r.code == 8, r.stderr
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [(i["source"], i["exit_code"]) for i in failed] == [(f"t/{victim}", 5)]
    assert not (tmp_path / "out" / victim).exists()
    _check(src, tmp_path / "out", {k: v for k, v in files.items() if k != victim})


@pytest.mark.subprocess
@pytest.mark.skipif(not CAN_MOUNT, reason="a full download target needs a tmpfs (root)")
def test_a_full_target_stops_the_workers_with_exit_7(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {f"f{i:04d}.bin": os.urandom(8192) for i in range(MANY)}
    for rel, data in files.items():
        write(src / rel, data)
    vault_cli.ok("upload", str(src), "--recursive", "--as", "t/")
    with tmpfs(tmp_path / "target", 512 * 1024) as target:
        r = vault_cli("download", "t/", "-o", str(target / "t"), "--json")
        assert r.code == 7, r.stderr
        assert r.json()["exit_code"] == 7
        written = [p for p in (target / "t").rglob("*") if p.is_file()]
        assert written, "some files fit"
        assert all(p.read_bytes() == files[p.name] for p in written), "no partial file"


def _workers_of(home: str) -> list[int]:
    """Processes still running a command of this vault home."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"LIVEDATA_HOME={home}".encode() in environ.split(b"\0"):
            found.append(int(pid))
    return found


@pytest.mark.subprocess
def test_kill_9_leaves_no_worker_and_a_rerun_completes(vault_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src, n=3000, seed=9)
    vault_cli.ok("upload", str(src), "--recursive", "--as", "t/")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*livedata_exe(), "download", "t/", "-o", str(out)],
        env=vault_cli.env,
        cwd=vault_cli.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and sum(1 for _ in out.rglob("*.bin")) >= 50:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail("the restore ended before it could be killed: make the tree larger")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    home = vault_cli.env["LIVEDATA_HOME"]
    deadline = time.monotonic() + 10
    while _workers_of(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _workers_of(home) == [], "the workers die with the command"
    r = vault_cli.ok("download", "t/", "-o", str(out), "--json")
    assert "failed" not in r.json()["counts"]
    _check(src, out, files)


def test_a_small_upload_or_download_imports_no_multiprocessing() -> None:
    """The worker pools import multiprocessing (tens of milliseconds) only when
    they start: a command of a few files never pays for it."""
    code = (
        "import sys; import livedata_cli.cli, livedata_cli.vault.upload, livedata_cli.vault.download, "
        "livedata_cli.vault.restore, livedata_cli.packs; "
        "print(sorted(m for m in sys.modules if m.startswith(('multiprocessing', 'concurrent.futures.process'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.subprocess
def test_odd_names_restore_through_the_workers(vault_cli: Cli, tmp_path: Path) -> None:
    """Names that are not UTF-8, 255 bytes long or hold control characters go
    to a worker and back as the same bytes."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    made: dict[bytes, bytes] = {}
    odd = [b"\xff\xfe-latin1-\xe9.bin", b"n" * 251 + b".bin", b"tab\there\x01\x7f.bin", "snow-\u2603.bin".encode()]
    for i in range(MANY):
        name = odd[i] if i < len(odd) else f"f{i:04d}.bin".encode()
        data = os.urandom(i % 3000)
        with open(os.path.join(os.fsencode(src / "d"), name), "wb") as f:
            f.write(data)
        made[name] = data
    vault_cli.ok("upload", str(src), "--recursive", "--as", "t/")
    out = tmp_path / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    back = os.fsencode(out / "d")
    assert sorted(os.listdir(back)) == sorted(made)
    for name, data in made.items():
        with open(os.path.join(back, name), "rb") as f:
            assert f.read() == data, name


STOP_SCRIPT = """
import sys, time
from livedata_cli import forked

def nothing():
    pass

def result(n):
    return b"x" * n

pool = forked.start(2, nothing, ())
futures = [pool.submit(result, 4 << 20) for _ in range(40)]
time.sleep(float(sys.argv[1]))
forked.stop(pool, finished=False)
print("stopped", flush=True)
"""


@pytest.mark.parametrize("after", [0.01, 0.05, 0.1, 0.2])
def test_workers_stopped_while_they_hand_back_results_never_hang_the_exit(after: float, tmp_path: Path) -> None:
    """An error or Ctrl-C stops the pool while big results are in the pipe: a
    worker killed in the middle of one left the pool's thread waiting for the
    rest of it, and the process hanging at exit (a full store's upload never ended)."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(after)], capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout == b"stopped\n", done.stderr[-2000:]
