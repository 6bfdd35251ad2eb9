"""livedata mount: a real FUSE mount of the vault, read-only, decrypted on read."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cli, data_objects, livedata_exe, write

HAS_FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
pytestmark = pytest.mark.skipif(not HAS_FUSE, reason="no /dev/fuse or fusermount3 on this machine: FUSE cannot mount")


class Mounted:
    def __init__(self, cli: Cli, mnt: Path, *args: str) -> None:
        mnt.mkdir(parents=True, exist_ok=True)
        self.mnt = mnt
        self.proc = subprocess.Popen([*livedata_exe(), "mount", str(mnt), *args], env=cli.env, cwd=cli.cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mount did not come up: {self.proc.communicate()}")
            time.sleep(0.1)

    def stop(self) -> tuple[int, str]:
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
        try:
            _out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return self.proc.returncode, err.decode()


@pytest.fixture
def mounts() -> Iterator[list[Mounted]]:
    made: list[Mounted] = []
    yield made
    for m in made:
        if m.proc.poll() is None:
            m.stop()


def test_mount_shows_files_versions_and_reads_in_ranges(vault_cli: Cli, mounts: list[Mounted], tmp_path: Path) -> None:
    cli = vault_cli
    big = os.urandom(3 * 1024 * 1024 + 12345)  # several segments, the last one short
    write(cli.cwd / "t" / "big.bin", big)
    write(cli.cwd / "t" / "sub" / "note.txt", "first\n")
    os.symlink("sub/note.txt", cli.cwd / "t" / "link")
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    write(cli.cwd / "t" / "sub" / "note.txt", "second version\n")
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    m = Mounted(cli, tmp_path / "mnt")
    mounts.append(m)
    root = m.mnt
    assert sorted(os.listdir(root)) == [".versions", "t"]
    assert (root / "t" / "big.bin").read_bytes() == big
    assert (root / "t" / "sub" / "note.txt").read_text() == "second version\n"
    assert os.readlink(root / "t" / "link") == "sub/note.txt"
    assert (root / ".versions" / "t" / "sub" / "note.txt" / "1").read_text() == "first\n"
    assert (root / ".versions" / "t" / "sub" / "note.txt" / "2").read_text() == "second version\n"
    with open(root / "t" / "big.bin", "rb") as f:  # random access across a segment boundary
        f.seek(1024 * 1024 - 10)
        assert f.read(30) == big[1024 * 1024 - 10 : 1024 * 1024 + 20]
        f.seek(len(big) - 5)
        assert f.read(100) == big[-5:]
    assert (root / "t" / "big.bin").stat().st_size == len(big)
    with pytest.raises(OSError) as e:
        (root / "t" / "new.txt").write_text("x")
    assert e.value.errno in (errno.EROFS, errno.EACCES)
    code, err = m.stop()
    assert code == 0, err


def test_a_tampered_segment_reads_as_an_io_error(vault_cli: Cli, mounts: list[Mounted], tmp_path: Path,
                                                 store_dir: Path) -> None:
    cli = vault_cli
    data = os.urandom(2 * 1024 * 1024 + 7)
    write(cli.cwd / "f.bin", data)
    cli.ok("upload", "f.bin")
    (obj,) = [p for p in data_objects(store_dir) if p.stat().st_size > 2 * 1024 * 1024]
    blob = bytearray(obj.read_bytes())
    blob[102 + 1024 * 1024 + 16 + 100] ^= 1  # a byte of the second segment
    obj.chmod(0o600)
    obj.write_bytes(bytes(blob))
    m = Mounted(cli, tmp_path / "mnt")
    mounts.append(m)
    with open(m.mnt / "f.bin", "rb") as f:
        assert f.read(1000) == data[:1000]  # the first segment is intact
        f.seek(1024 * 1024 + 50)
        with pytest.raises(OSError) as e:
            f.read(100)
        assert e.value.errno == errno.EIO


def test_mount_at_a_time_and_under_a_prefix(vault_cli: Cli, mounts: list[Mounted], tmp_path: Path) -> None:
    cli = vault_cli
    write(cli.cwd / "p" / "a.txt", "old\n")
    cli.ok("upload", "p", "--recursive", "--as", "p/")
    time.sleep(1.1)
    then = time.strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1.1)
    write(cli.cwd / "p" / "a.txt", "new\n")
    write(cli.cwd / "p" / "b.txt", "later\n")
    cli.ok("upload", "p", "--recursive", "--as", "p/")
    m = Mounted(cli, tmp_path / "mnt", "p/", "--at", then)
    mounts.append(m)
    assert sorted(os.listdir(m.mnt)) == [".versions", "a.txt"]
    assert (m.mnt / "a.txt").read_text() == "old\n"


def test_mount_refuses_a_missing_mountpoint(vault_cli: Cli, tmp_path: Path) -> None:
    from conftest import assert_one_line_error

    assert_one_line_error(vault_cli("mount", str(tmp_path / "nope")), 2)
