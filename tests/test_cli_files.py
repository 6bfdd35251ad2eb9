"""The vault core through the installed command: round trips, versions, trash, errors."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from conftest import PASSPHRASE, Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess


def test_upload_download_round_trip(vault_cli: Cli) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MiB segments, short last one
    write(vault_cli.cwd / "report.pdf", content)
    vault_cli.ok("upload", "report.pdf", "--tag", "work")
    vault_cli.ok("download", "report.pdf", "-o", "out.pdf")
    assert (vault_cli.cwd / "out.pdf").read_bytes() == content


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024, 1024 * 1024 + 1])
def test_sizes_round_trip(vault_cli: Cli, size: int) -> None:
    content = os.urandom(size)
    write(vault_cli.cwd / "f.bin", content)
    vault_cli.ok("upload", "f.bin")
    r = vault_cli.ok("download", "f.bin", "-o", "-")
    assert r.stdout == content


def test_stdin_upload_and_stdout_download(vault_cli: Cli) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("src/main.py")
        body = b"print('hi')\n"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    vault_cli.ok("upload", "-", "--as", "backups/src.tar", input=buf.getvalue())
    r = vault_cli.ok("download", "backups/src.tar", "-o", "-")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        assert tar.getnames() == ["src/main.py"]


def test_stdin_needs_as(vault_cli: Cli) -> None:
    assert_one_line_error(vault_cli("upload", "-", input=b"x"), 2)


def test_folder_round_trip_keeps_tree_and_mtimes(vault_cli: Cli) -> None:
    src = vault_cli.cwd / "photos"
    files = {"a.jpg": b"A" * 10, "2024/b.jpg": b"B" * 20, "2024/deep/c.jpg": b"C"}
    for rel, body in files.items():
        write(src / rel, body)
        os.utime(src / rel, (1_600_000_000, 1_600_000_000 + len(rel)))
    (src / "a.jpg").chmod(0o600)
    vault_cli.ok("upload", "photos", "--recursive", "--as", "pics/")
    listed = vault_cli.ok("ls", "--json").json()
    assert sorted(x["path"] for x in listed) == sorted("pics/" + rel for rel in files)
    vault_cli.ok("download", "pics/", "-o", "restore")
    for rel, body in files.items():
        got = vault_cli.cwd / "restore" / rel
        assert got.read_bytes() == body
        assert got.stat().st_mtime == 1_600_000_000 + len(rel)
    assert (vault_cli.cwd / "restore" / "a.jpg").stat().st_mode & 0o777 == 0o600


def test_folder_without_as_uses_its_name(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "docs" / "x.txt", "x")
    vault_cli.ok("upload", "docs", "--recursive")
    assert [x["path"] for x in vault_cli.ok("ls", "--json").json()] == ["docs/x.txt"]


def test_folder_needs_recursive(vault_cli: Cli) -> None:
    (vault_cli.cwd / "docs").mkdir()
    assert_one_line_error(vault_cli("upload", "docs"), 2)


def test_exclude(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "w" / "keep.txt", "k")
    write(vault_cli.cwd / "w" / "skip.tmp", "s")
    write(vault_cli.cwd / "w" / "cache" / "big", "c")
    vault_cli.ok("upload", "w", "-r", "--exclude", "*.tmp", "--exclude", "cache")
    assert [x["path"] for x in vault_cli.ok("ls", "--json").json()] == ["w/keep.txt"]


def test_versions_and_unchanged(vault_cli: Cli, store_dir: Path) -> None:
    f = write(vault_cli.cwd / "report.pdf", "version one")
    vault_cli.ok("upload", "report.pdf")
    before = data_objects(store_dir)
    r = vault_cli.ok("upload", "report.pdf", "--json").json()
    assert r["counts"] == {"unchanged": 1}
    os.utime(f, (1_700_000_000, 1_700_000_000))  # touched, same content: still not stored twice
    r = vault_cli.ok("upload", "report.pdf", "--json").json()
    assert r["counts"] == {"unchanged": 1}
    assert data_objects(store_dir) == before
    f.write_text("version two!")
    assert vault_cli.ok("upload", "report.pdf", "--json").json()["counts"] == {"changed": 1}
    info = vault_cli.ok("info", "report.pdf", "--json").json()
    assert info["version"] == 2 and len(info["versions"]) == 2
    vault_cli.ok("download", "report.pdf", "--version", "1", "-o", "old.pdf")
    assert (vault_cli.cwd / "old.pdf").read_text() == "version one"
    vault_cli.ok("download", "report.pdf", "-o", "new.pdf")
    assert (vault_cli.cwd / "new.pdf").read_text() == "version two!"
    assert_one_line_error(vault_cli("download", "report.pdf", "--version", "9"), 3)


def test_identical_content_is_stored_once(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.bin", b"same bytes" * 1000)
    write(vault_cli.cwd / "b.bin", b"same bytes" * 1000)
    r = vault_cli.ok("upload", "a.bin", "b.bin", "--json").json()
    assert r["counts"] == {"new": 2} and [i["deduplicated"] for i in r["items"]] == [False, True]
    assert len(data_objects(store_dir)) == 1
    assert vault_cli.ok("download", "b.bin", "-o", "-").stdout == b"same bytes" * 1000


def test_ls_long_and_info_fields(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "report.pdf", b"%PDF-1.7\nrest")
    vault_cli.ok("upload", "report.pdf", "--tag", "work", "--tag", "q3")
    row = vault_cli.ok("ls", "--long", "--json").json()[0]
    assert row["path"] == "report.pdf" and row["size"] == 13 and row["versions"] == 1
    assert row["tags"] == ["q3", "work"] and row["created"] > 0
    assert row["mime"] == "application/pdf"
    text = vault_cli.ok("ls", "--long").out
    assert "report.pdf" in text and "q3,work" in text
    info = vault_cli.ok("info", "report.pdf", "--json").json()
    for field in ("id", "object", "size", "mtime", "mode", "mime", "hash", "header_hash", "key_id", "created"):
        assert info[field] not in (None, ""), field
    assert "wrapped_key" not in info


def test_rm_trash_restore_purge(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "r.txt", "one")
    vault_cli.ok("upload", "r.txt")
    vault_cli.ok("rm", "r.txt")
    assert vault_cli.ok("ls", "--json").json() == []
    assert [x["path"] for x in vault_cli.ok("ls", "--trash", "--json").json()] == ["r.txt"]
    assert_one_line_error(vault_cli("download", "r.txt", "-o", "x"), 3)
    vault_cli.ok("restore", "r.txt")
    assert vault_cli.ok("download", "r.txt", "-o", "-").out == "one"
    vault_cli.ok("rm", "r.txt", "--purge")
    assert data_objects(store_dir) == []
    assert vault_cli.ok("ls", "--trash", "--json").json() == []
    assert_one_line_error(vault_cli("restore", "r.txt"), 3)


def test_tag_add_remove(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "r.txt", "x")
    vault_cli.ok("upload", "r.txt")
    assert vault_cli.ok("tag", "r.txt", "finance", "q3", "--json").json()["tags"] == ["finance", "q3"]
    assert vault_cli.ok("tag", "r.txt", "q3", "--remove", "--json").json()["tags"] == ["finance"]
    # A new version keeps the file's tags.
    (vault_cli.cwd / "r.txt").write_text("y")
    vault_cli.ok("upload", "r.txt")
    assert vault_cli.ok("info", "r.txt", "--json").json()["tags"] == ["finance"]


def test_download_by_version_id(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "r.txt", "by id")
    vid = vault_cli.ok("upload", "r.txt", "--json").json()["items"][0]["id"]
    assert vault_cli.ok("download", vid, "-o", "-").out == "by id"


def test_download_into_existing_folder_and_no_silent_overwrite(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "r.txt", "new")
    vault_cli.ok("upload", "r.txt")
    (vault_cli.cwd / "dest").mkdir()
    vault_cli.ok("download", "r.txt", "-o", "dest")
    assert (vault_cli.cwd / "dest" / "r.txt").read_text() == "new"
    # No -o: refuse to clobber the local file of the same name.
    (vault_cli.cwd / "r.txt").write_text("local edits")
    assert_one_line_error(vault_cli("download", "r.txt"), 2)
    assert (vault_cli.cwd / "r.txt").read_text() == "local edits"
    # -o a folder names the folder, not the file in it: a different file there is kept.
    (vault_cli.cwd / "dest" / "r.txt").write_text("edited in dest")
    r = vault_cli("download", "r.txt", "-o", "dest")
    assert_one_line_error(r, 2)
    assert "--overwrite" in r.stderr
    assert (vault_cli.cwd / "dest" / "r.txt").read_text() == "edited in dest"
    vault_cli.ok("download", "r.txt", "-o", "dest", "--overwrite")
    assert (vault_cli.cwd / "dest" / "r.txt").read_text() == "new"
    vault_cli.ok("download", "r.txt", "-o", "dest")  # the same version already there: unchanged, exit 0
    # -o naming the file itself is the explicit choice to replace it.
    (vault_cli.cwd / "dest" / "r.txt").write_text("edited again")
    vault_cli.ok("download", "r.txt", "-o", "dest/r.txt")
    assert (vault_cli.cwd / "dest" / "r.txt").read_text() == "new"
    # --tag selects a single file too.
    assert_one_line_error(vault_cli("download", "r.txt", "--tag", "nope", "-o", "-"), 3)
    vault_cli.ok("tag", "r.txt", "kept")
    assert vault_cli.ok("download", "r.txt", "--tag", "kept", "-o", "-").out == "new"
    # -o with a trailing slash is a folder, made when missing.
    vault_cli.ok("download", "r.txt", "-o", "made/")
    assert (vault_cli.cwd / "made" / "r.txt").read_text() == "new"


def test_missing_file_exit_3(vault_cli: Cli) -> None:
    assert_one_line_error(vault_cli("upload", "nope.txt"), 3)
    assert_one_line_error(vault_cli("download", "nope.txt", "-o", "x"), 3)
    assert_one_line_error(vault_cli("info", "nope.txt"), 3)
    assert not (vault_cli.cwd / "x").exists()


def test_partial_batch_exit_8_names_the_failure(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    write(vault_cli.cwd / "b.txt", "b")
    r = vault_cli("upload", "a.txt", "missing.txt", "b.txt", "--json")
    assert r.code == 8, r.stderr
    doc = r.json()
    failed = [i for i in doc["items"] if i["status"] == "failed"]
    assert [i["source"] for i in failed] == ["missing.txt"] and failed[0]["exit_code"] == 3
    assert sorted(x["path"] for x in vault_cli.ok("ls", "--json").json()) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b"])
def test_bad_vault_paths_are_usage_errors(vault_cli: Cli, bad: str) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    assert_one_line_error(vault_cli("upload", "a.txt", "--as", bad), 2)
    assert vault_cli.ok("ls", "--json").json() == []


def test_json_output_is_one_document(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    for args in (["upload", "a.txt"], ["ls"], ["info", "a.txt"], ["sync"], ["verify"], ["tag", "a.txt", "t"]):
        r = vault_cli.ok(*args, "--json")
        r.json()  # parses as exactly one JSON document
    r = vault_cli.ok("--json", "ls")  # global form too
    assert isinstance(r.json(), list)


def test_no_vault_yet(cli: Cli) -> None:
    assert_one_line_error(cli("ls"), 3)


def test_passphrase_is_never_printed(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    for args in (["upload", "a.txt", "--json"], ["info", "a.txt", "--json"], ["--debug", "ls"]):
        r = vault_cli.ok(*args)
        assert PASSPHRASE not in r.out and PASSPHRASE not in r.stderr


def test_ls_and_info_work_without_the_store(vault_cli: Cli, store_dir: Path) -> None:
    """The index is a local cache: listing needs neither the store nor the key."""
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    store_dir.rename(store_dir.with_name("store-unplugged"))
    no_key = {"LIVEDATA_PASSPHRASE": None}
    assert [x["path"] for x in vault_cli.ok("ls", "--json", env=no_key).json()] == ["a.txt"]
    assert vault_cli.ok("info", "a.txt", "--json", env=no_key).json()["path"] == "a.txt"
    r = vault_cli("download", "a.txt", "-o", "-")
    assert r.code == 6 and "store unreachable" in r.stderr and "Traceback" not in r.stderr


def test_download_into_a_pipe_or_a_device_streams_and_leaves_it_in_place(vault_cli: Cli) -> None:
    """-o /dev/null or a FIFO is written to, never renamed over (which would
    replace the device node with a file)."""
    content = os.urandom(300_000)
    write(vault_cli.cwd / "a.bin", content)
    vault_cli.ok("upload", "a.bin")
    fifo = vault_cli.cwd / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    vault_cli.ok("download", "a.bin", "-o", str(fifo))
    reader.join(30)
    assert got == [content]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if os.geteuid() == 0:  # a private copy of /dev/null (major 1, minor 3)
        null = vault_cli.cwd / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        vault_cli.ok("download", "a.bin", "-o", str(null))
        assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert not list(vault_cli.cwd.glob(".*.part"))
