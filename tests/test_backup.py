"""Backups for cron and CI: incremental trees, links and folders, excludes,
tagged artifact sets, point-in-time restores, retention and the vault lock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def _tree(root: Path) -> None:
    write(root / "a.txt", "alpha")
    write(root / "sub" / "b.txt", "beta")
    (root / "empty").mkdir(parents=True)
    (root / "link").symlink_to("sub/b.txt")
    (root / "dangling").symlink_to("/nonexistent/target")
    (root / "sub").chmod(0o750)
    os.utime(root / "sub", (1_500_000_000, 1_500_000_000))


def test_tree_round_trip_keeps_links_empty_folders_modes_and_times(vault_cli: Cli) -> None:
    src = vault_cli.cwd / "work"
    _tree(src)
    os.mkfifo(src / "pipe")  # a special file: skipped with a warning, not a failure
    os.utime(src / "link", (1_400_000_000, 1_400_000_000), follow_symlinks=False)
    r = vault_cli("upload", "work", "-r", "--as", "backups/work/")
    assert r.code == 0, r.stderr
    assert "pipe" in r.stderr and "skipped" in r.stderr
    vault_cli.ok("download", "backups/work/", "-o", "restore")
    out = vault_cli.cwd / "restore"
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "empty").is_dir() and not any((out / "empty").iterdir())
    assert os.readlink(out / "link") == "sub/b.txt" and (out / "link").read_text() == "beta"
    assert os.readlink(out / "dangling") == "/nonexistent/target"
    assert os.lstat(out / "link").st_mtime == 1_400_000_000  # a link keeps its own time
    assert (out / "sub").stat().st_mode & 0o777 == 0o750
    assert (out / "sub").stat().st_mtime == 1_500_000_000
    assert not (out / "pipe").exists()
    listed = vault_cli.ok("ls", "--all", "--json").json()
    kinds = {x["path"]: x["kind"] for x in listed}
    assert kinds["backups/work/empty"] == "dir" and kinds["backups/work/link"] == "symlink"
    assert "backups/work/empty" not in [x["path"] for x in vault_cli.ok("ls", "--json").json()]


def test_rerun_is_incremental(vault_cli: Cli, store_dir: Path) -> None:
    src = vault_cli.cwd / "work"
    for i in range(30):
        write(src / f"d{i % 3}" / f"f{i}.txt", f"file {i}")
    first = vault_cli.ok("upload", "work", "-r", "--json").json()
    assert first["counts"]["new"] == 33  # 30 files and 3 folders
    objects = data_objects(store_dir)
    again = vault_cli.ok("upload", "work", "-r", "--json").json()
    assert again["counts"] == {"unchanged": 33} and again["bytes_stored"] == 0
    assert data_objects(store_dir) == objects
    (src / "d0" / "f0.txt").write_text("changed!")
    third = vault_cli.ok("upload", "work", "-r", "--json").json()
    changed = [i["path"] for i in third["items"] if i["status"] == "changed"]
    assert "work/d0/f0.txt" in changed
    assert third["counts"]["unchanged"] >= 30


def test_exclude_file(vault_cli: Cli) -> None:
    src = vault_cli.cwd / "work"
    write(src / "keep.txt", "k")
    write(src / "x.tmp", "t")
    write(src / "build" / "out.o", "o")
    write(vault_cli.cwd / ".livedataignore", "# build products\n*.tmp\n\nbuild\n")
    vault_cli.ok("upload", "work", "-r", "--exclude-file", ".livedataignore")
    assert [x["path"] for x in vault_cli.ok("ls", "--json").json()] == ["work/keep.txt"]
    assert_one_line_error(vault_cli("upload", "work", "-r", "--exclude-file", "missing"), 2)


def test_ci_artifacts_latest_by_tag(vault_cli: Cli) -> None:
    for run, branch, body in [("101", "main", "old main"), ("102", "feature", "feature"), ("103", "main", "new main")]:
        write(vault_cli.cwd / f"dist{run}" / "app.bin", body)
        write(vault_cli.cwd / f"dist{run}" / "lib" / "x.so", body + " lib")
        vault_cli.ok(
            "upload", f"dist{run}", "-r", "--as", f"ci/{run}/", "--tag", f"commit=c{run}",
            "--tag", f"branch={branch}", "--json",
        )
        time.sleep(0.01)
    vault_cli.ok("download", "ci/", "--latest", "--tag", "branch=main", "-o", "dist")
    assert (vault_cli.cwd / "dist" / "app.bin").read_text() == "new main"
    assert (vault_cli.cwd / "dist" / "lib" / "x.so").read_text() == "new main lib"
    vault_cli.ok("download", "ci/", "--latest", "--tag", "branch=feature", "-o", "feat")
    assert (vault_cli.cwd / "feat" / "app.bin").read_text() == "feature"
    assert_one_line_error(vault_cli("download", "ci/", "--latest", "--tag", "branch=nope", "-o", "x"), 3)


def test_point_in_time_restore(vault_cli: Cli) -> None:
    src = vault_cli.cwd / "work"
    write(src / "a.txt", "first")
    write(src / "gone.txt", "later removed")
    vault_cli.ok("upload", "work", "-r")
    time.sleep(1.1)
    middle = time.strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1.1)
    (src / "a.txt").write_text("second")
    write(src / "new.txt", "added later")
    vault_cli.ok("upload", "work", "-r")
    vault_cli.ok("rm", "work/gone.txt")
    vault_cli.ok("download", "work/", "--at", middle, "-o", "then")
    then = vault_cli.cwd / "then"
    assert (then / "a.txt").read_text() == "first"
    assert (then / "gone.txt").read_text() == "later removed"
    assert not (then / "new.txt").exists()
    vault_cli.ok("download", "work/", "-o", "now")
    assert (vault_cli.cwd / "now" / "a.txt").read_text() == "second"
    assert not (vault_cli.cwd / "now" / "gone.txt").exists()
    assert_one_line_error(vault_cli("download", "work/", "--at", "yesterday-ish", "-o", "x"), 2)


def test_restore_refuses_to_overwrite(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "work" / "a.txt", "vault copy")
    vault_cli.ok("upload", "work", "-r")
    write(vault_cli.cwd / "out" / "a.txt", "local edits")
    r = vault_cli("download", "work/", "-o", "out")
    assert r.code in (2, 8)
    assert (vault_cli.cwd / "out" / "a.txt").read_text() == "local edits"
    vault_cli.ok("download", "work/", "-o", "out", "--overwrite")
    assert (vault_cli.cwd / "out" / "a.txt").read_text() == "vault copy"


def test_prune_keeps_by_policy(vault_cli: Cli, store_dir: Path) -> None:
    f = write(vault_cli.cwd / "log.txt", "v0")
    for i in range(1, 7):
        f.write_text(f"v{i}" + "x" * i)
        vault_cli.ok("upload", "log.txt")
    assert len(vault_cli.ok("info", "log.txt", "--json").json()["versions"]) == 6
    before = data_objects(store_dir)
    dry = vault_cli.ok("prune", "--keep-last", "2", "--dry-run", "--json").json()
    assert len(dry["removed"]) == 4 and dry["dry_run"] is True
    assert data_objects(store_dir) == before
    real = vault_cli.ok("prune", "--keep-last", "2", "--json").json()
    assert len(real["removed"]) == 4 and real["bytes_freed"] > 0
    info = vault_cli.ok("info", "log.txt", "--json").json()
    assert len(info["versions"]) == 2
    assert vault_cli.ok("download", "log.txt", "-o", "-").out == "v6xxxxxx"
    assert len(data_objects(store_dir)) == 2
    # Daily retention keeps one version a day: all of today's collapse to the newest.
    assert len(vault_cli.ok("prune", "--keep-daily", "7", "--json").json()["removed"]) == 1
    assert_one_line_error(vault_cli("prune", "logs/"), 2)  # a prefix needs a policy; no policy: housekeeping only
    vault_cli.ok("verify", "--data")


def test_prune_keeps_data_shared_with_other_paths(vault_cli: Cli) -> None:
    f = write(vault_cli.cwd / "a.txt", "shared content")
    vault_cli.ok("upload", "a.txt")
    write(vault_cli.cwd / "b.txt", "shared content")
    vault_cli.ok("upload", "b.txt")  # deduplicated: same object
    f.write_text("newer")
    vault_cli.ok("upload", "a.txt")
    vault_cli.ok("prune", "--keep-last", "1")
    assert vault_cli.ok("download", "b.txt", "-o", "-").out == "shared content"


def test_lock_no_wait_and_stale_lock(vault_cli: Cli, store_dir: Path) -> None:
    holder = subprocess.Popen(
        ["python3", "-c", "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid 1 on testhost'); print('locked', flush=True); time.sleep(60)",
         str(store_dir / "lock")],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    write(vault_cli.cwd / "a.txt", "a")
    r = vault_cli("upload", "a.txt", "--no-wait")
    assert_one_line_error(r, 7)
    assert "testhost" in r.stderr
    # A waiting run proceeds once the holder dies (kill -9 leaves no stale lock).
    waiter = vault_cli.popen("upload", "a.txt", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert waiter.stderr is not None
    first = waiter.stderr.readline()  # blocks until the waiter reports it is waiting
    assert b"waiting for the vault lock held by pid 1 on testhost" in first
    assert waiter.poll() is None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert [x["path"] for x in vault_cli.ok("ls", "--json").json()] == ["a.txt"]


def test_unattended_with_passphrase_file_and_failures_named(vault_cli: Cli, tmp_path: Path) -> None:
    pf = write(tmp_path / "pass", "correct horse battery staple\n")
    pf.chmod(0o600)
    write(vault_cli.cwd / "ok.txt", "fine")
    (vault_cli.cwd / "broken").symlink_to("/nonexistent")
    env = {"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_FILE": str(pf)}
    r = vault_cli("upload", "ok.txt", "broken", "--json", env=env)
    assert r.code == 8
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [i["source"] for i in failed] == ["broken"]
    assert r.json()["counts"]["new"] == 1


def test_backup_cycle_on_every_store_kind(kind_vault: KindVault) -> None:
    """The folder-store tests above, in one vault per store kind: a tree with links,
    empty folders, modes and times; an incremental rerun that stores nothing;
    a point-in-time restore; retention that frees the objects; a clean verify."""
    cli = kind_vault.cli
    src = cli.cwd / "work"
    _tree(src)
    for i in range(12):
        write(src / "many" / f"f{i:02d}.txt", f"file {i}")
    cli.ok("upload", "work", "-r", "--as", "backups/work/")
    objects = kind_vault.keys("data/")
    again = cli.ok("upload", "work", "-r", "--as", "backups/work/", "--json").json()
    assert set(again["counts"]) == {"unchanged"} and again["bytes_stored"] == 0
    assert kind_vault.keys("data/") == objects
    time.sleep(1.1)
    middle = time.strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1.1)
    big = write(src / "log.bin", os.urandom(300_000))
    for i in range(3):
        big.write_bytes(os.urandom(300_000 + i))
        cli.ok("upload", "work/log.bin", "--as", "backups/work/log.bin")
    other = kind_vault.other_machine()
    other.ok("download", "backups/work/", "--at", middle, "-o", "then")
    then = other.cwd / "then"
    assert (then / "a.txt").read_text() == "alpha" and not (then / "log.bin").exists()
    assert (then / "empty").is_dir() and os.readlink(then / "link") == "sub/b.txt"
    assert os.readlink(then / "dangling") == "/nonexistent/target"
    assert (then / "sub").stat().st_mode & 0o777 == 0o750 and (then / "sub").stat().st_mtime == 1_500_000_000
    assert (then / "many" / "f07.txt").read_text() == "file 7"
    before = len(kind_vault.keys("data/"))
    pruned = cli.ok("prune", "--keep-last", "1", "--json").json()
    assert len(pruned["removed"]) == 2 and pruned["bytes_freed"] >= 600_000
    assert len(kind_vault.keys("data/")) == before - 2
    assert cli.ok("download", "backups/work/log.bin", "-o", "-").stdout == big.read_bytes()
    cli.ok("verify", "--data")
