"""rm of several paths, globs and folders, in one journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess


def _tree(cli: Cli) -> None:
    for rel in ("a.txt", "b.txt", "c.log", "photos/1.jpg", "photos/2.jpg", "photos/raw/3.cr2"):
        write(cli.cwd / "t" / rel, rel)
    cli.ok("upload", "t", "--recursive", "--as", "")


def test_several_paths_globs_and_a_folder(vault_cli: Cli, store_dir: Path) -> None:
    cli = vault_cli
    _tree(cli)
    journals = len(list(store_dir.glob("journal/*")))
    r = cli.ok("rm", "a.txt", "*.log", "--json").json()
    assert sorted(r["paths"]) == ["a.txt", "c.log"] and r["versions"] == 2 and r["failed"] == []
    assert len(list(store_dir.glob("journal/*"))) == journals + 1  # one journal for the lot
    assert_one_line_error(cli("rm", "photos/"), 2)  # a folder needs --recursive
    r = cli.ok("rm", "photos/", "--recursive")
    assert "3 files" in r.stderr
    assert cli.ok("ls").out.split() == ["b.txt"]
    assert sorted(cli.ok("ls", "--trash").out.split()) == ["a.txt", "c.log", "photos/1.jpg", "photos/2.jpg",
                                                         "photos/raw/3.cr2"]
    cli.ok("restore", "photos/1.jpg")
    before = len(data_objects(store_dir))
    cli.ok("rm", "photos/", "-r", "--purge")
    assert not any(p.startswith("photos/") for p in cli.ok("ls", "--trash").out.split() + cli.ok("ls").out.split())
    assert len(data_objects(store_dir)) <= before


def test_a_ref_that_matches_nothing_is_named_and_the_rest_go(vault_cli: Cli) -> None:
    cli = vault_cli
    _tree(cli)
    r = cli("rm", "b.txt", "nosuch.txt", "*.zip")
    assert r.code == 8, r.stderr
    assert "nosuch.txt" in r.stderr and "*.zip" in r.stderr and "Traceback" not in r.stderr
    assert "b.txt" in cli.ok("ls", "--trash").out
    r = cli("rm", "nosuch.txt")
    assert_one_line_error(r, 3)
    assert r.stderr.startswith("livedata: error: ") and r.stderr.count("nosuch.txt") == 1, r.stderr
    assert_one_line_error(cli("rm", "b.txt"), 3)  # already in the trash


def test_with_json_the_failures_still_go_to_stderr(vault_cli: Cli) -> None:
    """--json puts the document on stdout; each error is still its line on stderr."""
    r = vault_cli("rm", "nothere", "--json")
    assert r.code == 3 and r.json()["failed"][0]["ref"] == "nothere"
    assert r.stderr.startswith("livedata: error: nothere") and r.stderr.count("\n") == 1, r.stderr
    r = vault_cli("upload", "nonexist", "--json")
    assert r.code == 3 and r.json()["items"][0]["status"] == "failed"
    assert r.stderr.startswith("livedata: error: nonexist") and r.stderr.count("\n") == 1, r.stderr
