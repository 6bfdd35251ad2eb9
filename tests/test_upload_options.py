"""upload --dry-run and --files-from(0), download --include/--exclude."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess


def test_dry_run_says_what_would_be_stored_and_changes_nothing(vault_cli: Cli, store_dir: Path) -> None:
    cli = vault_cli
    write(cli.cwd / "d" / "a.txt", "a" * 100)
    write(cli.cwd / "d" / "b.txt", "b" * 200)
    def state() -> tuple[list[Path], list[str]]:
        return sorted(data_objects(store_dir)), sorted(p.name for p in store_dir.glob("journal/*"))

    before = state()
    wrong = {"LIVEDATA_PASSPHRASE": "not the passphrase"}  # a dry run never unlocks
    doc = cli.ok("upload", "d", "--recursive", "--as", "d/", "--dry-run", "--json", env=wrong).json()
    assert doc["dry_run"] is True
    assert {i["path"]: i["status"] for i in doc["items"]} == {"d/a.txt": "new", "d/b.txt": "new"}
    assert doc["bytes_read"] == 300
    assert state() == before
    assert cli.ok("ls").out == ""
    cli.ok("upload", "d", "--recursive", "--as", "d/")
    write(cli.cwd / "d" / "b.txt", "B" * 250)
    r = cli.ok("upload", "d", "--recursive", "--as", "d/", "-n")
    assert r.out.splitlines() == [" unchanged  d/a.txt  (100 B)", "   changed  d/b.txt  (250 B)"]
    assert "250 B would be read; nothing was stored" in r.stderr
    assert cli.ok("info", "d/b.txt", "--json").json()["size"] == 200


def test_files_from_lists_keep_their_relative_paths(vault_cli: Cli) -> None:
    cli = vault_cli
    write(cli.cwd / "src" / "main.c", "int main;\n")
    write(cli.cwd / "src" / "lib" / "util.c", "util\n")
    write(cli.cwd / "docs" / "guide.md", "guide\n")
    write(cli.cwd / "skip.txt", "not listed\n")
    write(cli.cwd / "list.txt", "# what the nightly job keeps\nsrc/main.c\n\n./docs\n")
    cli.ok("upload", "--files-from", "list.txt", "--recursive", "--as", "job/")
    assert cli.ok("ls").out.split() == ["job/docs/guide.md", "job/src/main.c"]
    odd = "two\nlines.txt"
    write(cli.cwd / odd, "odd name\n")
    write(cli.cwd / "list0", f"{odd}\0src/lib/util.c\0".encode())
    cli.ok("upload", "--files-from0", "list0")
    assert cli.ok("download", odd, "-o", "-").stdout == b"odd name\n"
    assert cli.ok("download", "src/lib/util.c", "-o", "-").stdout == b"util\n"
    r = cli("upload", "--files-from", "-", input=b"missing.txt\nsrc/main.c\n")
    assert r.code == 8, r.stderr  # the missing one is named, the rest stored
    assert "missing.txt" in r.stderr
    assert_one_line_error(cli("upload", "--files-from", "nope.txt"), 2)
    assert_one_line_error(cli("upload"), 2)


def test_download_include_and_exclude(vault_cli: Cli, tmp_path: Path) -> None:
    cli = vault_cli
    for rel in ("a.txt", "b.log", "cache/c.txt", "sub/d.txt", "sub/cache/e.txt"):
        write(cli.cwd / "t" / rel, rel)
    cli.ok("upload", "t", "--recursive", "--as", "t/")

    def restored(*args: str) -> list[str]:
        out = tmp_path / f"out-{len(os.listdir(tmp_path))}"
        cli.ok("download", "t/", "-o", str(out), *args)
        return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())

    assert restored("--include", "*.txt", "--exclude", "cache") == ["a.txt", "sub/d.txt"]
    assert restored("--include", "sub/*") == ["sub/cache/e.txt", "sub/d.txt"]
    assert restored("--exclude", "*.txt") == ["b.log"]
    assert_one_line_error(cli("download", "t/a.txt", "--include", "*.txt", "-o", "x"), 2)
