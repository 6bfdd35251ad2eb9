"""What a prefix download finds in its target folder: links, pipes, folders and
files where the vault has something else.  Nothing is ever written through an
entry that is there, nothing there is removed unasked, and each message names
the entry it is about."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write
from livedata_cli import localfs


def _vault_with_tree(cli: Cli) -> Path:
    src = cli.cwd / "src"
    write(src / "a" / "f.txt", "secret plaintext\n")
    write(src / "a" / "g.txt", "another file\n")
    write(src / "d" / "x.txt", "in a folder\n")
    cli.ok("init")
    cli.ok("upload", str(src), "-r", "--as", "src/")
    return src


def test_overwrite_replaces_a_link_to_a_device_instead_of_writing_through_it(cli: Cli) -> None:
    _vault_with_tree(cli)
    out = cli.cwd / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "f.txt").symlink_to("/dev/null")
    cli.ok("download", "src/", "-o", str(out), "--overwrite")
    assert not (out / "a" / "f.txt").is_symlink()
    assert (out / "a" / "f.txt").read_text() == "secret plaintext\n"


def test_overwrite_replaces_a_pipe_in_the_target_without_waiting_for_a_reader(cli: Cli) -> None:
    _vault_with_tree(cli)
    out = cli.cwd / "out"
    (out / "a").mkdir(parents=True)
    os.mkfifo(out / "a" / "f.txt")
    cli.ok("download", "src/", "-o", str(out), "--overwrite", timeout=60)
    assert stat.S_ISREG(os.lstat(out / "a" / "f.txt").st_mode)
    assert (out / "a" / "f.txt").read_text() == "secret plaintext\n"


def test_a_folder_where_a_file_goes_is_kept_and_named(cli: Cli) -> None:
    _vault_with_tree(cli)
    out = cli.cwd / "out"
    write(out / "a" / "f.txt" / "mine.txt", "keep me")
    for extra in ([], ["--overwrite"]):
        r = cli("download", "src/", "-o", str(out), *extra)
        assert r.code == 8, r.stderr
        assert "out/a/f.txt is a folder: the file is not restored over it" in r.stderr
        assert "--overwrite" not in r.stderr and "choose another -o" not in r.stderr
        assert (out / "a" / "f.txt" / "mine.txt").read_text() == "keep me"
        assert (out / "a" / "g.txt").read_text() == "another file\n"


def test_a_file_where_a_folder_goes_is_kept_and_named(cli: Cli) -> None:
    _vault_with_tree(cli)
    out = cli.cwd / "out"
    write(out / "d", "a file of mine")
    r = cli("download", "src/", "-o", str(out), "--overwrite")
    assert r.code == 8, r.stderr
    assert "out/d is not a folder: the folder is not restored over it" in r.stderr
    assert "choose another -o" not in r.stderr
    assert (out / "d").read_text() == "a file of mine"
    assert (out / "a" / "f.txt").read_text() == "secret plaintext\n"


def test_a_tree_to_something_that_is_not_a_folder_is_a_usage_error(cli: Cli) -> None:
    _vault_with_tree(cli)
    write(cli.cwd / "afile", "existing")
    (cli.cwd / "dangling").symlink_to(cli.cwd / "nowhere")
    for target in ("afile", "dangling", "/dev/null"):
        r = cli("download", "src/", "-o", target)
        assert_one_line_error(r, 2)
        assert "is not a folder: choose another -o" in r.stderr
        r = cli("download", "src/", "-o", target, "--json")
        assert r.code == 2 and '"exit_code": 2' in r.out
    assert (cli.cwd / "afile").read_text() == "existing"
    assert not (cli.cwd / "nowhere").exists()


def test_a_temporary_file_removed_by_another_restore_before_it_was_locked_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second restore into the same folder cleans it of stale temporary files;
    between this one's exclusive create and its lock, it can take the new file
    for one.  The file then returned must still be there."""
    import fcntl

    real_flock = fcntl.flock
    raced: list[int] = []

    def flock_after_a_cleaner(fd: int, op: int) -> None:
        if not raced:  # the other restore's cleaner runs in the gap, once (it locks too)
            raced.append(-1)
            raced[0] = localfs.remove_stale_temps(tmp_path)
        real_flock(fd, op)

    monkeypatch.setattr(localfs.fcntl, "flock", flock_after_a_cleaner)
    tmp, fd = localfs.create_temporary(tmp_path)
    try:
        assert raced == [1]  # the cleaner did take the first one
        assert tmp.exists() and os.path.samestat(os.fstat(fd), os.stat(tmp))
    finally:
        os.close(fd)
        localfs.interrupt.kept(tmp)


def test_a_folder_turned_into_a_link_does_not_get_the_folder_mode(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (tmp_path / "restored").symlink_to(outside)
    with pytest.raises(OSError):  # the link is not followed
        localfs.set_folder_times_and_mode(tmp_path / "restored", 0.0, 0o777)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert outside.stat().st_mtime > 0.0
