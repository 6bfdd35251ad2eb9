"""stats and diff: what a vault holds and what changed, read from the index."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t).isoformat(timespec="microseconds")


def test_stats_counts_files_versions_bytes_dedup_and_tags(vault_cli: Cli) -> None:
    cli = vault_cli
    payload = b"x" * 50_000
    write(cli.cwd / "d" / "a.bin", payload)
    write(cli.cwd / "d" / "copy.bin", payload)  # the same content: one container
    write(cli.cwd / "d" / "b.txt", "bee\n")
    write(cli.cwd / "other.txt", "elsewhere\n")
    cli.ok("upload", "d", "--recursive", "--as", "d/", "--tag", "work")
    cli.ok("upload", "other.txt")
    write(cli.cwd / "d" / "b.txt", "bee, second version\n")
    cli.ok("upload", "d/b.txt", "--as", "d/b.txt")
    s = cli.ok("stats", "d/", "--json").json()
    assert (s["files"], s["versions"], s["trashed"]) == (3, 4, 0)
    assert s["logical_bytes"] == 2 * 50_000 + len("bee, second version\n")
    assert s["all_versions_bytes"] == s["logical_bytes"] + 4
    assert s["objects"] == 3  # a.bin and copy.bin share one container
    assert 50_000 < s["stored_bytes"] < 51_000 + 2 * 1000
    assert s["dedup_ratio"] > 1.9
    assert s["tags"] == {"work": {"files": 3, "bytes": s["logical_bytes"]}}  # a new version keeps its tags
    whole = cli.ok("stats", "--json").json()
    assert whole["files"] == 4
    cli.ok("rm", "other.txt")
    assert cli.ok("stats", "--json").json()["trashed"] == 1
    text = cli.ok("stats").out
    assert "dedup ratio:" in text and "work" in text


def test_diff_between_two_points_in_time(vault_cli: Cli) -> None:
    cli = vault_cli
    write(cli.cwd / "t" / "keep.txt", "same\n")
    write(cli.cwd / "t" / "edit.txt", "one\n")
    write(cli.cwd / "t" / "gone.txt", "bye\n")
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    first = time.time()
    time.sleep(0.05)
    write(cli.cwd / "t" / "edit.txt", "two\n")
    write(cli.cwd / "t" / "new.txt", "hi\n")
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    cli.ok("rm", "t/gone.txt")
    out = cli.ok("diff", _iso(first), "now", "--prefix", "t/").out.splitlines()
    assert out == ["M  t/edit.txt", "-  t/gone.txt", "+  t/new.txt"]
    doc = cli.ok("diff", _iso(first), "--json").json()
    edit = next(c for c in doc["changes"] if c["path"] == "t/edit.txt")
    assert (edit["before"]["version"], edit["after"]["version"]) == (1, 2)
    assert cli.ok("diff", _iso(first), _iso(first)).out == ""  # no time passed: nothing changed
    assert_one_line_error(cli("diff", "now-ish"), 2)
    assert_one_line_error(cli("diff", _iso(time.time()), _iso(first)), 2)


def test_diff_escapes_control_characters_in_names(vault_cli: Cli) -> None:
    cli = vault_cli
    before = time.time()
    write(cli.cwd / "x.txt", "x\n")
    cli.ok("upload", "x.txt", "--as", "evil\x1b]0;pwned\x07.txt")
    out = cli.ok("diff", _iso(before - 1)).out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07" in out
