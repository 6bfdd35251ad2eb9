"""Nothing bricked, nothing littered: interrupted restores, a missing store, a
store that lost its config, a killed rebuild, and a damaged or read-only index."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, livedata_exe, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

LITTER = ".livedata-0123456789abcdef.part"


def _tree(cli: Cli, n: int = 5) -> dict[str, bytes]:
    files = {f"d/f{i}.bin": os.urandom(1000 + i) for i in range(n)}
    files["d/sub/deep.txt"] = b"deep\n"
    for rel, data in files.items():
        write(cli.cwd / "tree" / rel, data)
    cli.ok("upload", "tree", "--recursive", "--as", "t/")
    return files


def _restored(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    }


# -- item 11: interrupted restores ---------------------------------------------------
def _wait_for_part(folder: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> Path | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir():
            parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
            if parts:
                return parts[0]
        time.sleep(0.002)
    return None


@pytest.fixture
def big_file(vault_cli: Cli) -> Iterator[bytes]:
    data = os.urandom(1 << 20) * 96  # 96 MiB: a download long enough to interrupt
    write(vault_cli.cwd / "big.bin", data)
    vault_cli.ok("upload", "big.bin")
    (vault_cli.cwd / "big.bin").unlink()
    yield data


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_download_leaves_no_litter_after_a_rerun(vault_cli: Cli, big_file: bytes, sig: int) -> None:
    out = vault_cli.cwd / "out"
    out.mkdir()
    proc = vault_cli.popen("download", "big.bin", "-o", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    part = _wait_for_part(out, proc)
    assert part is not None, "the download ended before its temporary file was seen"
    assert len(part.name) == len(LITTER) and oct(part.stat().st_mode & 0o777) == oct(0o600)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert list(out.iterdir()) == []  # removed by the interrupted run itself
    else:
        assert [p.name for p in out.iterdir()] == [part.name]  # kill -9 cannot clean up
    vault_cli.ok("download", "big.bin", "-o", str(out))
    assert [p.name for p in out.iterdir()] == ["big.bin"]
    assert (out / "big.bin").read_bytes() == big_file


def test_a_rerun_of_an_interrupted_prefix_download_completes(vault_cli: Cli) -> None:
    files = _tree(vault_cli)
    out = vault_cli.cwd / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    # As a killed run leaves it: two files not yet restored, one temporary file.
    (out / "d" / "f3.bin").unlink()
    (out / "d" / "sub" / "deep.txt").unlink()
    write(out / "d" / LITTER, b"half a file")
    write(out / "d" / ".livedata-notes.part", b"not ours")  # another name: left alone
    r = vault_cli("download", "t/", "-o", str(out), "--json")
    assert r.code == 0, r.stderr
    statuses = {i["source"]: i["status"] for i in r.json()["items"]}
    assert statuses["t/d/f0.bin"] == "unchanged" and statuses["t/d/f3.bin"] == "downloaded"
    assert not (out / "d" / LITTER).exists() and (out / "d" / ".livedata-notes.part").exists()
    (out / "d" / ".livedata-notes.part").unlink()
    assert _restored(out) == files


def test_a_restore_over_identical_files_is_idempotent(vault_cli: Cli) -> None:
    files = _tree(vault_cli)
    vault_cli.ok("download", "t/", "-o", "out")
    r = vault_cli("download", "t/", "-o", "out")
    assert r.code == 0, r.stderr
    assert _restored(vault_cli.cwd / "out") == files
    # A single file downloaded again to where it was written: the same.
    vault_cli.ok("download", "t/d/f1.bin")
    r = vault_cli("download", "t/d/f1.bin")
    assert r.code == 0, r.stderr


def test_a_differing_file_still_needs_overwrite(vault_cli: Cli) -> None:
    files = _tree(vault_cli)
    out = vault_cli.cwd / "out"
    vault_cli.ok("download", "t/", "-o", str(out))
    changed = out / "d" / "f2.bin"
    st = changed.stat()
    changed.write_bytes(b"X" * len(files["d/f2.bin"]))  # same size and time, other content
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = vault_cli("download", "t/", "-o", str(out))
    assert r.code == 2, r.stderr
    assert "--overwrite" in r.stderr and changed.read_bytes() != files["d/f2.bin"]
    vault_cli.ok("download", "t/", "-o", str(out), "--overwrite")
    assert _restored(out) == files


# -- item 5: a missing store is unreachable, never re-created ------------------------
def test_a_missing_folder_store_is_unreachable_and_not_recreated(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    store_dir.rename(store_dir.with_name("store-unplugged"))
    write(vault_cli.cwd / "b.txt", "b")
    for args in (
        ("upload", "b.txt"),
        ("download", "a.txt", "-o", "a-back.txt"),
        ("download", "a.txt", "-o", "-"),
        ("sync",),
        ("sync", "--rebuild"),
        ("verify",),
        ("rm", "a.txt"),
        ("tag", "a.txt", "x"),
        ("prune", "--keep-last", "1"),
    ):
        r = vault_cli(*args)
        assert_one_line_error(r, 6)
        assert "store unreachable" in r.stderr and str(store_dir) in r.stderr, (args, r.stderr)
        assert not store_dir.exists(), args
    assert vault_cli.ok("ls").out == "a.txt\n"  # the index was not emptied by the rebuild
    store_dir.with_name("store-unplugged").rename(store_dir)
    vault_cli.ok("upload", "b.txt")


def test_only_init_creates_a_folder_store(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "usb" / "vault"
    cli.ok("init", "--store", str(store))
    assert (store / "config").is_file()
    assert oct(store.stat().st_mode & 0o777) == oct(0o700)


# -- item 6: a store that lost its config, a killed rebuild ---------------------------
def test_init_refuses_a_store_that_lost_its_config(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "keep.txt", "keep me")
    cli.ok("upload", "keep.txt")
    with kind_vault.raw() as store:
        config = store.get_bytes("config")
        store.delete("config")
        slots = sorted(store.list("keys/"))
    other = kind_vault.other_machine(attach=False)
    r = other("init", "--store", kind_vault.url)
    assert_one_line_error(r, 5)
    assert "no config" in r.stderr
    with kind_vault.raw() as store:
        assert not store.exists("config") and sorted(store.list("keys/")) == slots
        store.put_bytes("config", config)
    assert cli.ok("download", "keep.txt", "-o", "-").stdout == b"keep me"


def _filler_journals(n: int) -> None:
    """Many small journals (tag records for no file), as years of commands leave."""
    from livedata_cli.keys.unlock import Unlocker
    from livedata_cli.vault.core import Vault

    vault = Vault.open(Unlocker(use_keyring=False))
    try:
        for i in range(n):
            vault._write_journal([{"t": "tag", "vid": f"{i:032x}", "add": ["x"]}])
    finally:
        vault.close()


def test_a_killed_rebuild_leaves_the_old_index_in_use(vault_cli: Cli) -> None:
    home = Path(vault_cli.env["LIVEDATA_HOME"])
    write(vault_cli.cwd / "first" / "a.txt", "a")
    vault_cli.ok("upload", "first", "--recursive")
    os.environ.update(vault_cli.env)
    _filler_journals(400)
    write(vault_cli.cwd / "last" / "z.txt", "z")
    vault_cli.ok("upload", "last", "--recursive")
    expected = vault_cli.ok("ls").out
    assert expected.split() == ["first/a.txt", "last/z.txt"]
    index = home / "index.sqlite"
    total = _journal_count(index)
    killed_mid_run = False
    for _attempt in range(4):
        proc = vault_cli.popen("sync", "--rebuild", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until the replay is under way: a new index file beside the old
        # one, or (the old way) the old index emptied and refilling.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            aside = index.with_name("index.sqlite.rebuild")
            if (aside.exists() and _journal_count(aside) > 5) or 5 < _journal_count(index) < total:
                break
            time.sleep(0.01)
        killed_mid_run = proc.poll() is None
        proc.kill()
        proc.wait()
        assert vault_cli.ok("ls").out == expected  # never a partial index
        assert vault_cli.ok("download", "last/", "-o", str(vault_cli.cwd / f"o{_attempt}")).code == 0
        if killed_mid_run:
            break
    assert killed_mid_run, "every rebuild finished before it was killed"
    vault_cli.ok("sync", "--rebuild")
    assert vault_cli.ok("ls").out == expected
    assert not [p for p in home.iterdir() if ".rebuild" in p.name]


def _journal_count(index: Path) -> int:
    """Journals replayed into an index, read while another process writes it."""
    try:
        db = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT count(*) FROM journals").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return -1


# -- item 7: a damaged index is rebuilt by the documented fix -----------------------
def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "header":
        data[:16] = b"garbage garbage!"
        path.write_bytes(bytes(data))
    elif how == "page":
        page = int.from_bytes(data[16:18], "big")
        for start in range(page, len(data), page):  # every page but the first (the schema)
            data[start : start + page] = os.urandom(min(page, len(data) - start))
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"this is not a database at all\n" * 100)


def _indexed_vault(cli: Cli) -> tuple[Path, str]:
    for i in range(30):
        write(cli.cwd / "tree" / f"f{i:02}.txt", f"file {i}\n")
    cli.ok("upload", "tree", "--recursive")
    index = Path(cli.env["LIVEDATA_HOME"]) / "index.sqlite"
    assert not Path(f"{index}-wal").exists() or Path(f"{index}-wal").stat().st_size == 0
    return index, cli.ok("ls").out


@pytest.mark.parametrize("how", ["truncated", "header", "page", "not-sqlite"])
@pytest.mark.parametrize("fix", [("sync", "--rebuild"), ("doctor", "--fix")])
def test_a_damaged_index_is_rebuilt_by_the_documented_fix(vault_cli: Cli, how: str, fix: tuple[str, ...]) -> None:
    index, listing = _indexed_vault(vault_cli)
    _damage(index, how)
    for args in (("ls",), ("search", "file"), ("download", "tree/f01.txt", "-o", "-"), ("upload", "tree", "-r")):
        r = vault_cli(*args)
        assert_one_line_error(r, 5)
        assert "sync --rebuild" in r.stderr and "doctor --fix" in r.stderr, (args, r.stderr)
    r = vault_cli(*fix)
    assert r.code == 0, r.stderr
    assert vault_cli.ok("ls").out == listing
    assert [p for p in index.parent.iterdir() if ".damaged-" in p.name]  # kept aside, not deleted
    assert vault_cli.ok("download", "tree/f01.txt", "-o", "-").stdout == b"file 1\n"


def test_a_read_only_home_still_lists_searches_and_downloads(tmp_path: Path, livedata_env: dict[str, str]) -> None:
    base = Path(tempfile.mkdtemp(prefix="livedata-ro-"))
    try:
        os.chmod(base, 0o755)
        home = base / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(livedata_env, LIVEDATA_HOME=str(home))
        work = base / "work"
        work.mkdir()
        owner = Cli(env, work)
        owner.ok("init")
        write(work / "notes.txt", "read me\n")
        owner.ok("upload", "notes.txt")
        nobody = 65534
        for p in [home, *home.rglob("*"), work, *work.rglob("*")]:
            os.chown(p, nobody, nobody)
        os.chmod(home / "index.sqlite", 0o400)
        os.chmod(home, 0o500)

        def run(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", *livedata_exe(), *args],
                env=env, cwd=work, capture_output=True, timeout=120,
            )

        assert run("ls").stdout == b"notes.txt\n"
        found = run("search", "notes")
        assert found.returncode == 0 and b"notes.txt" in found.stdout, found.stderr
        got = run("download", "notes.txt", "-o", "-")
        assert got.returncode == 0 and got.stdout == b"read me\n", got.stderr
        r = run("tag", "notes.txt", "x")  # a write: one line naming the index, no traceback
        assert r.returncode == 2, r.stderr
        assert b"read-only" in r.stderr and b"Traceback" not in r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_rebuild_keeps_what_the_journals_do_not_hold(vault_cli: Cli) -> None:
    """The audit trail and other local tables survive a rebuild (only the cache is rebuilt)."""
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    index = Path(vault_cli.env["LIVEDATA_HOME"]) / "index.sqlite"

    def audit_rows() -> Any:
        db = sqlite3.connect(index)
        try:
            return db.execute("SELECT chain, seq, mac FROM audit_events ORDER BY chain, seq").fetchall()
        finally:
            db.close()

    before = audit_rows()
    assert before
    vault_cli.ok("sync", "--rebuild")
    assert audit_rows()[: len(before)] == before
    vault_cli.ok("audit", "verify")


def test_a_failed_rebuild_leaves_the_damaged_index_saying_what_to_do(vault_cli: Cli) -> None:
    index, listing = _indexed_vault(vault_cli)
    _damage(index, "header")
    r = vault_cli("sync", "--rebuild", env={"LIVEDATA_PASSPHRASE": "not the passphrase"})
    assert_one_line_error(r, 4)
    assert_one_line_error(vault_cli("ls"), 5)  # never an empty listing
    vault_cli.ok("sync", "--rebuild")
    assert vault_cli.ok("ls").out == listing


def test_a_checkpoint_cut_off_before_the_last_pages_is_no_damage(tmp_path: Path) -> None:
    """kill -9 during a checkpoint can leave the file's header counting pages
    not yet written to it; they are in the write-ahead log beside it, which
    SQLite reads.  The index opens and holds every row (the header check of a
    truncated file applies only where no log is left)."""
    from livedata_cli.index.core import Index

    live = tmp_path / "live" / "index.sqlite"
    index = Index(live)
    try:
        with index.write() as db:
            db.execute("CREATE TABLE t (x BLOB)")
            db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(2000),) for _ in range(300)])
        # The files as a crash leaves them: main file and a log with frames.
        crash = tmp_path / "crash"
        crash.mkdir()
        for suffix in ("", "-wal"):
            (crash / f"index.sqlite{suffix}").write_bytes(Path(f"{live}{suffix}").read_bytes())
    finally:
        index.close()
    copy = crash / "index.sqlite"
    assert Path(f"{copy}-wal").stat().st_size > 0
    data = bytearray(copy.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[28:32] = (len(data) // page + 50).to_bytes(4, "big")  # page 1 written, the rest not yet
    data[92:96] = data[24:28]  # and its page count valid
    copy.write_bytes(bytes(data))
    opened = Index(copy)
    try:
        assert opened.db.execute("SELECT count(*) FROM t").fetchone()[0] == 300
        assert opened.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        opened.close()
    Path(f"{copy}-wal").unlink(missing_ok=True)  # the same header with no log is a truncated file
    Path(f"{copy}-shm").unlink(missing_ok=True)
    copy.write_bytes(bytes(data))
    from livedata_cli.errors import IndexDamaged

    with pytest.raises(IndexDamaged, match="truncated"):
        Index(copy)
