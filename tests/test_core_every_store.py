"""The core round trips of test_cli_files.py, on every store kind: one vault per
kind (a server start each), many checks in it."""

from __future__ import annotations

import os

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

MiB = 1024 * 1024


def test_core_round_trips_on_every_store_kind(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    # Sizes around the segment boundary, and stdin to stdout.
    sizes = {f"s/{n}.bin": os.urandom(n) for n in (0, 1, MiB, MiB + 1, 3 * MiB + 17)}
    for path, data in sizes.items():
        write(cli.cwd / path, data)
    cli.ok("upload", "s", "-r")
    for path, data in sizes.items():
        assert cli.ok("download", path, "-o", "-").stdout == data, path
    piped = os.urandom(200_000)
    cli.ok("upload", "-", "--as", "piped.bin", input=piped)
    assert cli.ok("download", "piped.bin", "-o", "-").stdout == piped
    # Versions: an unchanged rerun stores nothing; a change is version 2; both download.
    f = write(cli.cwd / "report.pdf", os.urandom(100_000))
    one = f.read_bytes()
    vid = cli.ok("upload", "report.pdf", "--tag", "work", "--json").json()["items"][0]["id"]
    objects = kind_vault.keys("data/")
    assert cli.ok("upload", "report.pdf", "--json").json()["counts"] == {"unchanged": 1}
    assert kind_vault.keys("data/") == objects
    f.write_bytes(os.urandom(100_001))
    assert cli.ok("upload", "report.pdf", "--json").json()["counts"] == {"changed": 1}
    assert cli.ok("download", "report.pdf", "--version", "1", "-o", "-").stdout == one
    assert cli.ok("download", vid, "-o", "-").stdout == one
    assert cli.ok("download", "report.pdf", "-o", "-").stdout == f.read_bytes()
    assert cli.ok("info", "report.pdf", "--json").json()["tags"] == ["work"]
    assert_one_line_error(cli("download", "report.pdf", "--version", "9"), 3)
    # Identical content is stored once.
    same = os.urandom(2 * MiB)
    write(cli.cwd / "a.bin", same)
    write(cli.cwd / "b.bin", same)
    before = len(kind_vault.keys("data/"))
    r = cli.ok("upload", "a.bin", "b.bin", "--json").json()
    assert sorted(i["deduplicated"] for i in r["items"]) == [False, True]  # in parallel on S3: either first
    assert len(kind_vault.keys("data/")) == before + 1
    # Trash, restore, purge: the purge deletes the objects no version needs.
    cli.ok("rm", "b.bin")
    assert_one_line_error(cli("download", "b.bin", "-o", "x"), 3)
    cli.ok("restore", "b.bin")
    assert cli.ok("download", "b.bin", "-o", "-").stdout == same
    cli.ok("rm", "a.bin", "--purge")
    cli.ok("rm", "b.bin", "--purge")
    assert len(kind_vault.keys("data/")) == before
    # A second machine sees the same vault, and everything checks out.
    other = kind_vault.other_machine()
    listed = {x["path"] for x in other.ok("ls", "--json").json()}
    assert listed == {*sizes, "piped.bin", "report.pdf"}
    assert other.ok("download", "s/3145745.bin", "-o", "-").stdout == sizes["s/3145745.bin"]
    other.ok("verify", "--data")
