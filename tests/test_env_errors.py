"""The machine fails, not livedata: a full store, home or download target, a
read-only or vanished store, an unwritable index, a missing source file.
Each is one ``livedata: error:`` line naming the place, its documented exit
code (7 no space, 6 store, 2 home or target, 3 missing), a JSON document under
``--json``, and nothing already stored harmed.

The full disks are real: a small tmpfs where the test can mount one (as root),
and otherwise (and also here, so both paths stay tested) ``faultwrap``, loaded
through ``sitecustomize``, which fails the store's writes with ENOSPC once a
chosen number of bytes went in.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.subprocess

MiB = 1024 * 1024


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/livedata-mount-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    finally:
        probe.rmdir()


CAN_MOUNT = _can_mount()


@contextlib.contextmanager
def tmpfs(path: Path, size: int, inodes: int | None = None) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


FAULTWRAP = textwrap.dedent(
    '''
    """Loaded by sitecustomize in a test's child process: the folder store's
    writes fail with ENOSPC once LIVEDATA_TEST_ENOSPC_AFTER bytes went in."""
    import errno
    import os

    LIMIT = int(os.environ["LIVEDATA_TEST_ENOSPC_AFTER"])
    written = [0]

    class _Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            n = len(data)
            if written[0] + n > LIMIT:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[0] += n
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def install():
        from livedata_cli.stores import local

        real_create = local.LocalStore._create

        def create(self, tmp):
            return _Full(real_create(self, tmp))  # every object the folder store writes

        local.LocalStore._create = create

    install()
    '''
)


def _wrapped(cli: Cli, tmp_path: Path, after: int) -> dict[str, str]:
    """Environment for a child whose folder store fills up after ``after`` bytes."""
    site = tmp_path / "site"
    write(site / "faultwrap.py", FAULTWRAP)
    write(site / "sitecustomize.py", "import os\nif os.environ.get('LIVEDATA_TEST_ENOSPC_AFTER'):\n    import faultwrap  # noqa: F401\n")
    return {"PYTHONPATH": str(site), "LIVEDATA_TEST_ENOSPC_AFTER": str(after)}


def _assert_no_space(r: object, place: str) -> None:
    assert_one_line_error(r, 7)  # type: ignore[arg-type]
    line = r.stderr.strip()  # type: ignore[attr-defined]
    assert "no space left on " in line and place in line and "needed" in line, line


@pytest.mark.parametrize("how", ["tmpfs", "wrapper"])
def test_full_store_is_exit_7_naming_the_store_and_harms_nothing(cli: Cli, tmp_path: Path, how: str) -> None:
    if how == "tmpfs" and not CAN_MOUNT:
        pytest.skip("mounting a tmpfs needs root: the wrapper case covers a full store here")
    mnt = tmp_path / "mnt"
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        if how == "tmpfs":
            stack.enter_context(tmpfs(mnt, 3 * MiB))
        store = mnt / "store"
        cli.ok("init", "--store", str(store))
        kept = os.urandom(400_000)
        write(cli.cwd / "kept.bin", kept)
        cli.ok("upload", "kept.bin")
        if how == "wrapper":
            extra = _wrapped(cli, tmp_path, 1 * MiB)
        write(cli.cwd / "big.bin", os.urandom(4 * MiB))
        for i in range(40):
            write(cli.cwd / "tree" / f"f{i:02d}", os.urandom(100_000))
        _assert_no_space(cli("upload", "big.bin", env=extra), str(store))
        r = cli("upload", "tree", "-r", "--json", env=extra)
        _assert_no_space(r, str(store))
        doc = r.json()
        assert doc["exit_code"] == 7 and "no space left on the store" in doc["error"]
        reported = {i["path"] for i in doc.get("items", []) if i["status"] in ("new", "changed")}
        # Nothing already stored is harmed, and the vault still works.
        assert cli.ok("download", "kept.bin", "-o", "-").stdout == kept
        cli.ok("verify", "--data")
        listed = {x["path"] for x in cli.ok("ls", "--json").json()}
        assert "kept.bin" in listed and "big.bin" not in listed
        assert reported <= listed, "every file the report calls stored is in the vault"
        for path in listed - {"kept.bin"}:  # whatever a full store let through is whole
            assert cli.ok("download", path, "-o", "-").stdout == (cli.cwd / path).read_bytes()


@pytest.mark.skipif(not CAN_MOUNT, reason="a full store of real size needs a tmpfs (root)")
def test_a_full_store_keeps_the_packs_sealed_before_it(cli: Cli, tmp_path: Path) -> None:
    """Small files go into 16 MiB packs: when the store fills during the second
    pack, the files of the first (whole in the store) are kept, as the docs
    promise for a full store, and a rerun does not start from nothing."""
    with tmpfs(tmp_path / "mnt", 24 * MiB) as mnt:
        store = mnt / "store"
        cli.ok("init", "--store", str(store))
        files = {f"t/f{i:02d}": os.urandom(1_000_000) for i in range(30)}
        for rel, data in files.items():
            write(cli.cwd / rel, data)
        r = cli("upload", "t", "-r", "--json")
        _assert_no_space(r, str(store))
        listed = {x["path"] for x in cli.ok("ls", "--json").json()}
        assert len(listed) >= 15, listed  # the first pack's files (16 MiB of them)
        reported = {i["path"] for i in r.json()["items"] if i["status"] == "new"}
        assert reported == listed
        for path in listed:
            assert cli.ok("download", path, "-o", "-").stdout == files[path]
        cli.ok("verify", "--data")


@pytest.mark.skipif(not CAN_MOUNT, reason="a full download target needs a tmpfs (root)")
def test_full_download_target_is_exit_7_and_leaves_no_part_file(vault_cli: Cli, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    write(vault_cli.cwd / "f.bin", data)
    for i in range(3):
        write(vault_cli.cwd / "d" / f"{i}.bin", data)
    vault_cli.ok("upload", "f.bin", "d", "-r")
    with tmpfs(tmp_path / "target", MiB) as target:
        _assert_no_space(vault_cli("download", "f.bin", "-o", str(target / "f.bin")), str(target / "f.bin"))
        r = vault_cli("download", "d/", "-o", str(target / "d"), "--json")
        _assert_no_space(r, str(target / "d"))
        assert "6.0 MiB needed" in r.stderr, "what the files not restored need, not one file's size"
        assert r.json()["exit_code"] == 7
        leftovers = [p for p in target.rglob("*") if p.is_file() and p.stat().st_size not in (len(data),)]
        assert leftovers == [], "no partial file stays behind"


@pytest.mark.skipif(not CAN_MOUNT, reason="a download target out of inodes needs a tmpfs (root)")
def test_a_download_target_out_of_inodes_says_so(vault_cli: Cli, tmp_path: Path) -> None:
    for i in range(40):
        write(vault_cli.cwd / "d" / f"{i:02d}.txt", f"{i}")
    vault_cli.ok("upload", "d", "-r")
    with tmpfs(tmp_path / "target", 8 * MiB, inodes=20) as target:
        r = vault_cli("download", "d/", "-o", str(target / "d"))
        _assert_no_space(r, str(target / "d"))
        assert "no file entries (inodes) left" in r.stderr


@pytest.mark.skipif(not CAN_MOUNT, reason="a full store needs a tmpfs (root)")
def test_a_store_too_full_for_a_lock_names_the_store_not_the_current_folder(cli: Cli, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", 4 * MiB) as mnt:
        cli.ok("init", "--store", str(mnt / "store"))
        with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
        write(cli.cwd / "f.txt", "x")
        r = cli("upload", "f.txt")
        assert_one_line_error(r, 7)
        assert f"no space left on the store {mnt / 'store'}" in r.stderr, r.stderr
        assert "disk of" not in r.stderr


@pytest.mark.skipif(not CAN_MOUNT, reason="a full index home needs a tmpfs (root)")
def test_full_index_home_is_exit_7_naming_the_home(cli: Cli, tmp_path: Path) -> None:
    # Room for the index of these 400 files twice over (its file and its
    # write-ahead log), so the recovery at the end is not itself at the edge.
    with tmpfs(tmp_path / "homefs", 3 * MiB) as homefs:
        home = homefs / "home"
        env = {"LIVEDATA_HOME": str(home)}
        cli.ok("init", "--store", str(tmp_path / "store"), env=env)
        for i in range(400):
            write(cli.cwd / "t" / f"{'n' * 150}-{i:04d}", f"{i}")
        # Leave the home a few pages: the index cannot take the next batch.
        free = os.statvfs(homefs).f_bavail * os.statvfs(homefs).f_frsize
        write(homefs / "filler", b"\0" * (free - 16 * 1024))
        r = cli("upload", "t", "-r", env=env)
        _assert_no_space(r, str(home)) if "needed" in r.stderr else assert_one_line_error(r, 7)
        assert "index home" in r.stderr and str(home) in r.stderr
        (homefs / "filler").unlink()
        cli.ok("upload", "t", "-r", env=env)
        cli.ok("verify", "--data", env=env)


@pytest.mark.skipif(not CAN_MOUNT, reason="a read-only store needs a tmpfs remounted read-only (root)")
def test_read_only_store_is_exit_6(cli: Cli, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", 8 * MiB) as mnt:
        cli.ok("init", "--store", str(mnt / "store"))
        write(cli.cwd / "a.txt", "a")
        cli.ok("upload", "a.txt")
        remount(mnt, "ro")
        write(cli.cwd / "b.txt", "b")
        r = cli("upload", "b.txt")
        assert_one_line_error(r, 6)
        assert str(mnt / "store") in r.stderr and "read-only" in r.stderr.lower()
        r = cli("upload", "b.txt", "--json")
        assert r.code == 6 and r.json()["exit_code"] == 6
        remount(mnt, "rw")
        assert cli.ok("download", "a.txt", "-o", "-").out == "a"
        cli.ok("upload", "b.txt")


def test_a_store_folder_moved_away_after_its_folders_were_made_is_unreachable(tmp_path: Path) -> None:
    """The store remembers the folders it made; one made before the store moved
    away made the next object's folder recurse without end (exit 1)."""
    from livedata_cli.errors import StoreUnreachable
    from livedata_cli.stores.local import LocalStore

    store = LocalStore(tmp_path / "store")
    store.prepare()
    first, second = "data/" + "0" * 32, "data/" + "1" * 32
    store.put_bytes(first, b"first")
    with pytest.raises(StoreUnreachable, match="does not exist"), store.writer(second) as f:
        f.write(b"second")
        (tmp_path / "store").rename(tmp_path / "away")  # while an object is written
    assert not (tmp_path / "store").exists()
    assert (tmp_path / "away" / "data" / "00" / ("0" * 32)).read_bytes() == b"first"


def test_store_deleted_mid_upload_is_exit_6_and_not_recreated(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "usb" / "store"
    cli.ok("init", "--store", str(store))
    p = cli.popen("upload", "-", "--as", "x.bin", stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdin is not None
    p.stdin.write(os.urandom(3 * MiB))
    p.stdin.flush()
    deadline = time.monotonic() + 60
    while not any((store / "tmp").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["rm", "-rf", str(store)], check=True)  # the disk is unplugged
    p.stdin.write(os.urandom(MiB))
    p.stdin.close()
    assert p.stderr is not None
    err = p.stderr.read()
    p.wait(timeout=60)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert p.returncode == 6, err
    assert len(lines) == 1 and lines[0].startswith("livedata: error: ") and str(store) in lines[0], err
    assert not store.exists(), "the store is never re-created by an upload"


def test_missing_source_file_is_one_line_exit_3(vault_cli: Cli) -> None:
    r = vault_cli("upload", "nosuchfile")
    assert r.code == 3
    assert r.stderr == "livedata: error: nosuchfile: No such file or directory\n"
    r = vault_cli("upload", "nosuchfile", "--json")
    assert r.code == 3 and r.json()["items"][0]["exit_code"] == 3


def test_download_onto_an_unwritable_target_is_one_line(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "f", "data")
    vault_cli.ok("upload", "f")
    r = vault_cli("download", "f", "-o", "/proc/version")
    assert_one_line_error(r, 2)
    assert "/proc/version" in r.stderr
    r = vault_cli("download", "f", "-o", "/proc/version", "--json")
    assert r.code == 2 and r.json()["exit_code"] == 2


def test_immutable_index_is_exit_2_naming_the_home(vault_cli: Cli, tmp_path: Path) -> None:
    home = Path(vault_cli.env["LIVEDATA_HOME"])
    index = home / "index.sqlite"
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    if subprocess.run(["chattr", "+i", str(index)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        write(vault_cli.cwd / "b.txt", "b")
        r = vault_cli("upload", "b.txt")
        assert_one_line_error(r, 2)
        assert "index home" in r.stderr and str(home) in r.stderr
        r = vault_cli("upload", "b.txt", "--json")
        assert r.code == 2 and r.json()["exit_code"] == 2
    finally:
        subprocess.run(["chattr", "-i", str(index)], check=True)
    vault_cli.ok("upload", "b.txt")
    assert vault_cli.ok("download", "a.txt", "-o", "-").out == "a"
