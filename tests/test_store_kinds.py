"""The same round trip and the same hostile store on every store kind."""

from __future__ import annotations

import os

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def test_round_trip_and_second_machine(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    data = os.urandom(300_000)
    write(cli.cwd / "tree" / "a.bin", data)
    write(cli.cwd / "tree" / "sub" / "b.txt", "hello\n")
    cli.ok("upload", "tree", "--recursive", "--as", "t/")
    other = kind_vault.other_machine()
    assert sorted(other.ok("ls", "t/").out.split()) == ["t/a.bin", "t/sub/b.txt"]
    assert other.ok("download", "t/a.bin", "-o", "-").stdout == data
    with kind_vault.raw() as store:
        assert store.exists("config") and list(store.list("data/"))


def test_edited_object_is_an_integrity_error(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "f.bin", os.urandom(5000))
    cli.ok("upload", "f.bin")
    before = set(kind_vault.keys("data/"))
    assert before
    with kind_vault.raw() as store:
        for key in before:
            blob = bytearray(store.get_bytes(key))
            blob[len(blob) // 2] ^= 1
            store.put_bytes(key, bytes(blob))
    assert_one_line_error(cli("download", "f.bin", "-o", str(cli.cwd / "out.bin")), 5)
    assert not (cli.cwd / "out.bin").exists()
