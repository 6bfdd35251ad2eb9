"""``livedata prune`` reclaims space without forgetting a version, on every
store kind; ``verify`` reports what is reclaimable and ``doctor`` mentions it;
a full store still lets ``rm --purge`` and ``prune`` through; and a prune or
purge killed at any point loses nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import store_kinds
from paused import kill_at
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, livedata_exe, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def _store_bytes(kv: KindVault, prefix: str = "data/") -> int:
    with kv.raw() as store:
        return sum(store.size(k) for k in store.list(prefix))


def _check_all(cli: Cli, files: dict[str, bytes]) -> None:
    """Every file downloads byte for byte (a folder prefix in one command) and
    verify --data is clean."""
    out = Path(tempfile.mkdtemp(dir=cli.cwd))
    folders = sorted({p.split("/")[0] for p in files if "/" in p})
    for folder in folders:
        cli.ok("download", f"{folder}/", "-o", str(out / folder))
    for path, data in files.items():
        if "/" in path:
            got = (out / path).read_bytes()
        else:
            got = cli.ok("download", path, "-o", "-").stdout
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), path
    r = cli.ok("verify", "--data", "--json").json()
    assert r["problems"] == []
    shutil.rmtree(out)


def _versions(cli: Cli) -> list[tuple[str, int]]:
    return sorted((x["path"], x["versions"]) for x in cli.ok("ls", "--json").json())


# -- what prune reclaims -------------------------------------------------------------
def test_prune_without_policy_reclaims_a_killed_uploads_data(kind_vault: KindVault) -> None:
    """An upload killed after its data and before its journal leaves an object
    nobody refers to: verify counts it, prune deletes it, no version goes."""
    cli = kind_vault.cli
    keep = {"keep.bin": os.urandom(40_000), "keep2.txt": b"small file\n"}
    for name, data in keep.items():
        write(cli.cwd / name, data)
        cli.ok("upload", name)
    write(cli.cwd / "lost.bin", os.urandom(250_000))
    kill_at(cli, ["upload", "lost.bin"], "journal")
    _killed_long_ago(cli)  # a partial file it may have begun in tmp/ is litter too, not a live upload's
    before = _versions(cli)
    found = cli.ok("verify", "--json").json()["reclaimable"]
    assert found["unreferenced"]["objects"] == 1 and found["unreferenced"]["bytes"] >= 250_000
    dry = cli.ok("prune", "--dry-run", "--json").json()
    assert dry["reclaimed"]["unreferenced"]["objects"] == 1
    assert cli.ok("verify", "--json").json()["reclaimable"]["unreferenced"]["objects"] == 1  # dry run kept it
    done = cli.ok("prune", "--json").json()
    assert done["removed"] == [] and done["reclaimed"]["unreferenced"]["objects"] == 1
    assert done["bytes_freed"] >= 250_000
    assert _versions(cli) == before
    _check_all(cli, keep)
    _nothing_reclaimable(cli)


def test_prune_reclaims_partial_uploads_in_tmp(vault_cli: Cli, tmp_path: Path) -> None:
    """A killed upload's half-written file in the store's tmp/ (issue: 712 MB
    kept through every command) is counted by verify and doctor and deleted
    by prune."""
    cli = vault_cli
    store = Path(cli.env["LIVEDATA_HOME"]) / "store"
    p = subprocess.Popen(
        [*livedata_exe(), "upload", "-", "--as", "big.bin"], env=cli.env, cwd=cli.cwd,
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert p.stdin is not None
    p.stdin.write(os.urandom(6 * 1024 * 1024))
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = [f for f in (store / "tmp").glob("*") if f.stat().st_size > 1024 * 1024]
        if parts:
            break
        time.sleep(0.02)
    p.kill()
    p.wait()
    partial = sum(f.stat().st_size for f in (store / "tmp").glob("*"))
    assert partial > 1024 * 1024
    old = time.time() - 7200
    for f in (store / "tmp").glob("*"):
        os.utime(f, (old, old))  # as a run killed two hours ago left it
    doctor = cli("doctor", "--json").json()
    check = next(c for c in doctor["checks"] if c["name"] == "reclaimable")
    assert check["status"] == "warn" and "partial upload" in check["message"] and check["hint"] == "run 'livedata prune'"
    found = cli.ok("verify", "--json").json()["reclaimable"]["tmp"]
    assert found == {"objects": 1, "bytes": partial}
    r = cli.ok("prune")
    assert "1 partial upload(s)" in r.out
    assert list((store / "tmp").glob("*")) == []
    doctor = cli("doctor", "--json").json()
    assert next(c for c in doctor["checks"] if c["name"] == "reclaimable")["status"] == "ok"


def test_prune_repacks_packs_with_dead_space(kind_vault: KindVault) -> None:
    """Purged members leave dead space in a pack (every store kind packs
    small files): prune copies the live members into a new
    pack, journals the move, and deletes the old pack.  A second machine
    replays the move.  The fifteen members are purged by one ``rm --purge``:
    the pack's dead space is what fifteen commands leave, at a fifteenth of
    the cost on a remote store."""
    cli = kind_vault.cli
    files = {f"t/f{i:02d}.txt": os.urandom(2000 + i) for i in range(30)}
    for path, data in files.items():
        write(cli.cwd / path, data)
    cli.ok("upload", "t", "--recursive")
    other = kind_vault.other_machine()
    purged = [f"t/f{i:02d}.txt" for i in range(0, 30, 2)]
    cli.ok("rm", "--purge", *purged)  # one command: the same dead space, one journal not fifteen
    for path in purged:
        del files[path]
    found = cli.ok("verify", "--json").json()["reclaimable"]
    size_before = _store_bytes(kind_vault)
    assert found["packs"]["objects"] == 1 and found["packs"]["bytes"] >= 15 * 2000
    done = cli.ok("prune", "--json").json()
    assert done["reclaimed"]["packs"] == found["packs"]
    assert _store_bytes(kind_vault) == size_before - found["packs"]["bytes"]
    _check_all(cli, files)
    # The other machine's index still names the old pack: a download replays the move.
    first = sorted(files)[0]
    assert other.ok("download", first, "-o", "-").stdout == files[first]
    other.ok("sync")  # the purges: a prefix download lists what the index holds
    _check_all(other, files)
    other.ok("sync", "--rebuild")
    _check_all(other, files)
    _nothing_reclaimable(cli)


def test_policy_prune_forgets_and_reclaims(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    data = [os.urandom(30_000) for _ in range(3)]
    for d in data:
        write(cli.cwd / "f.bin", d)
        cli.ok("upload", "f.bin")
    before = _store_bytes(kind_vault)
    dry = cli.ok("prune", "--keep-last", "1", "--dry-run", "--json").json()
    assert len(dry["removed"]) == 2 and dry["bytes_freed"] >= 60_000
    assert _store_bytes(kind_vault) == before
    r = cli.ok("prune", "--keep-last", "1", "--json").json()
    assert len(r["removed"]) == 2 and r["bytes_freed"] >= 60_000
    _check_all(cli, {"f.bin": data[-1]})


def test_prune_prefix_without_policy_is_a_usage_error(vault_cli: Cli) -> None:
    assert_one_line_error(vault_cli("prune", "docs/"), 2)


@pytest.mark.parametrize("kind_vault", ["s3"], indirect=True)
def test_prune_aborts_abandoned_multipart_uploads(kind_vault: KindVault) -> None:
    """S3: a killed upload's multipart upload, which no record on the pruning
    machine will resume, is aborted by prune (after ``LIVEDATA_S3_ABANDON_AFTER``).
    Multipart uploads are an S3 thing: no vault is made on the other kinds."""
    cli = kind_vault.cli
    other = kind_vault.other_machine()
    write(cli.cwd / "big.bin", os.urandom(24 * 1024 * 1024))
    env = {**cli.env, "LIVEDATA_S3_PART_SIZE": str(5 * 1024 * 1024)}
    p = subprocess.Popen([*livedata_exe(), "upload", "big.bin"], env=env, cwd=cli.cwd,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with kind_vault.raw() as store:
        while time.monotonic() < deadline and not list(store.list_uploads("data/")) and p.poll() is None:
            time.sleep(0.05)
        p.kill()
        p.wait()
        assert len(list(store.list_uploads("data/"))) == 1
        env = {"LIVEDATA_S3_ABANDON_AFTER": "0"}
        assert other.ok("prune", "--dry-run", "--json", env=env).json()["reclaimed"]["uploads"]["objects"] == 1
        assert len(list(store.list_uploads("data/"))) == 1
        assert other.ok("prune", "--json", env=env).json()["reclaimed"]["uploads"]["objects"] == 1
        assert list(store.list_uploads("data/")) == []


# -- a full store ------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> None:
    """Fill the file system to the last byte (unbuffered: nothing left to flush)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            piece = b"\xa5" * size
            while True:
                try:
                    os.write(fd, piece)
                except OSError:
                    break
    finally:
        os.close(fd)
    st = os.statvfs(folder)
    assert st.f_bavail == 0


def test_purge_and_prune_work_on_a_full_store(cli: Cli, tmp_path: Path) -> None:
    """A folder store on a real 6 MiB tmpfs filled to the last byte: rm --purge
    (which must write a journal first) and prune still work, from the store's
    reserve, and the reserve is written again afterwards."""
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        store = disk / "store"
        cli.ok("init", "--store", str(store))
        keep = {"keep.bin": os.urandom(300_000)}
        write(cli.cwd / "keep.bin", keep["keep.bin"])
        write(cli.cwd / "big.bin", os.urandom(2 * 1024 * 1024))
        cli.ok("upload", "keep.bin", "big.bin")
        assert (store / "reserve").exists()
        write(cli.cwd / "huge.bin", os.urandom(8 * 1024 * 1024))
        assert cli("upload", "huge.bin").code != 0  # the store fills up
        _fill(disk)
        r = cli("rm", "--purge", "big.bin")
        assert r.code == 0, r.stderr
        assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize >= 1024 * 1024
        assert (store / "reserve").exists()  # written again once there was room
        _fill(disk)
        r = cli("prune", "--json")
        assert r.code == 0, r.stderr
        _check_all(cli, keep)
        assert cli("download", "big.bin", "-o", "-").code == 3


# -- kill -9 at seeded random points -----------------------------------------------
PURGE_STAGES = ["locked", "journal", "journaled", "purge-journaled"]
PRUNE_STAGES = ["locked", "prune-deleted", "repack-written", "journal", "journaled", "repack-journaled"]


def _killed_long_ago(cli: Cli) -> None:
    """Age a folder store's partial files past prune's margin (TMP_MARGIN): a prune
    leaves files younger than that, which commands run in-process reach quickly."""
    old = time.time() - 60
    for f in (Path(cli.env["LIVEDATA_HOME"]) / "store" / "tmp").glob("*"):
        os.utime(f, (old, old))


def _nothing_reclaimable(cli: Cli) -> None:
    left = cli.ok("verify", "--json").json()["reclaimable"]
    tmp = Path(cli.env["LIVEDATA_HOME"]) / "store" / "tmp"
    assert left["total_objects"] == 0, (left, sorted(os.listdir(tmp)) if tmp.is_dir() else None)


def _vault_with_litter(kv: KindVault) -> dict[str, bytes]:
    """A vault with each kind of litter prune reclaims: a second version for a policy
    to forget, dead space in a pack (eight members purged by one command) and the
    unreferenced data of an upload killed before its journal."""
    cli = kv.cli
    files = {f"t/f{i:02d}.txt": os.urandom(1000 + 37 * i) for i in range(24)}
    files["t/big.bin"] = os.urandom(400_000)
    for path, data in files.items():
        write(cli.cwd / path, data)
    cli.ok("upload", "t", "--recursive")
    files["t/big.bin"] = os.urandom(300_000)  # a second version, for a policy to forget
    write(cli.cwd / "t/big.bin", files["t/big.bin"])
    cli.ok("upload", "t/big.bin", "--as", "t/big.bin")
    purged = [f"t/f{i:02d}.txt" for i in range(0, 24, 3)]
    cli.ok("rm", "--purge", *purged)  # the dead pack space of eight purges, in one command
    for path in purged:
        del files[path]
    write(cli.cwd / "lost.bin", os.urandom(100_000))
    kill_at(cli, ["upload", "lost.bin"], "journal")
    return files


@store_kinds.every_stage_on_folder(PRUNE_STAGES, "prune-deleted")
def test_prune_killed_at_each_stage(kind_vault: KindVault, stage: str) -> None:
    """Every stage on a folder store; on S3 and the API the stage after the
    deletions, before the journal (the stages run the same code on every kind)."""
    cli = kind_vault.cli
    files = _vault_with_litter(kind_vault)
    kill_at(cli, ["prune", "--keep-last", "1"], stage)
    cli.ok("sync")
    _check_all(cli, files)
    _killed_long_ago(cli)
    cli.ok("prune", "--keep-last", "1")
    _check_all(cli, files)
    _nothing_reclaimable(cli)


@store_kinds.every_stage_on_folder(PURGE_STAGES, "purge-journaled")
def test_purge_killed_at_each_stage(kind_vault: KindVault, stage: str) -> None:
    """Every stage on a folder store; on S3 and the API the stage after the purge's
    journal, before its data is deleted."""
    cli = kind_vault.cli
    files = _vault_with_litter(kind_vault)
    kill_at(cli, ["rm", "--purge", "t/big.bin"], stage)
    cli.ok("sync")  # killed after its journal, before its own index saw it
    purged = cli("download", "t/big.bin", "-o", "-").code == 3
    if not purged:
        _check_all(cli, files)
        cli.ok("rm", "--purge", "t/big.bin")
    del files["t/big.bin"]
    _killed_long_ago(cli)
    cli.ok("prune")
    _check_all(cli, files)
    _nothing_reclaimable(cli)


@pytest.mark.parametrize("seed", range(6))
def test_prune_and_purge_killed_at_random_moments(vault_cli: Cli, seed: int) -> None:
    """SIGKILL at a seeded random moment of a prune with a policy (purge
    journal, deletions, repacking many members), of a prune without one, or
    of an rm --purge."""
    cli = vault_cli
    rng = random.Random(seed)
    files = {f"t/f{i:03d}.txt": rng.randbytes(500 + rng.randrange(3000)) for i in range(300)}
    for path, data in files.items():
        write(cli.cwd / path, data)
    cli.ok("upload", "t", "--recursive")
    for i in range(0, 300, 3):
        files[f"t/f{i:03d}.txt"] = rng.randbytes(700)
        write(cli.cwd / f"t/f{i:03d}.txt", files[f"t/f{i:03d}.txt"])
    cli.ok("upload", "t", "--recursive")
    mode = seed % 3
    if mode == 0:
        args = ["prune", "--keep-last", "1"]
    elif mode == 1:
        kill_at(cli, ["prune", "--keep-last", "1"], "journaled")  # versions forgotten, nothing reclaimed
        args = ["prune"]
    else:
        args = ["rm", "--purge", "t/f001.txt"]
    p = subprocess.Popen([*livedata_exe(), *args], env=cli.env, cwd=cli.cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.2, 1.5))
    p.send_signal(signal.SIGKILL)
    p.wait()
    cli.ok("sync")
    if mode == 2:
        if cli("download", "t/f001.txt", "-o", "-").code != 3:
            cli.ok("rm", "--purge", "t/f001.txt")
        del files["t/f001.txt"]
    _check_all(cli, files)
    _killed_long_ago(cli)
    cli.ok("prune", "--keep-last", "1")
    _check_all(cli, files)
    _nothing_reclaimable(cli)
    assert all(n == 1 for _p, n in _versions(cli))


def test_prune_deletes_no_data_while_a_journal_is_unread(vault_cli: Cli) -> None:
    """Objects that only an unreadable journal refers to look unreferenced to
    the index: prune must not take them for garbage."""
    cli = vault_cli
    store = Path(cli.env["LIVEDATA_HOME"]) / "store"
    write(cli.cwd / "a.bin", os.urandom(20_000))
    cli.ok("upload", "a.bin")
    write(cli.cwd / "lost.bin", os.urandom(20_000))
    kill_at(cli, ["upload", "lost.bin"], "journal")
    before = sorted(p.name for p in (store / "data").rglob("*") if p.is_file())
    planted = store / "journal" / "99999999999999999999-0000000000000000"
    planted.write_bytes(b"LDJ\x01" + os.urandom(200))  # a journal nobody can replay
    r = cli("prune", "--json")
    assert r.code != 0 or "not replayed" in r.out
    assert sorted(p.name for p in (store / "data").rglob("*") if p.is_file()) == before
    planted.unlink()
    assert cli.ok("prune", "--json").json()["reclaimed"]["unreferenced"]["objects"] == 1
