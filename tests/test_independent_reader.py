"""The docs are enough: a reader written from docs/ alone (tests/independent_reader.py,
which does not import livedata_cli) opens a vault the CLI made and gets every
byte of every file version back."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from independent_reader import ReadError, read_vault

from conftest import PASSPHRASE, Cli, write

pytestmark = pytest.mark.inprocess


def test_the_reader_imports_nothing_of_livedata() -> None:
    tree = ast.parse((Path(__file__).parent / "independent_reader.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.startswith("livedata")]


def test_reads_back_every_version_of_a_vault_made_by_the_cli(vault_cli: Cli, store_dir: Path) -> None:
    pw = {"LIVEDATA_FILE_PASSWORD": "a file password"}
    expected: dict[str, list[bytes]] = {}

    def put(rel: str, data: bytes) -> None:
        write(vault_cli.cwd / "src" / rel, data)
        expected.setdefault(f"v/{rel}", []).append(data)

    put("notes.txt", b"small and packed")
    put("empty.bin", b"")
    put("deep/one-segment.bin", os.urandom(1024 * 1024))  # exactly one full segment, still packed
    put("big.bin", os.urandom(3 * 1024 * 1024 + 5))  # four segments, an object of its own
    put("unicode/\u00e9t\u00e9.txt", "d\u00e9j\u00e0 vu".encode())
    vault_cli.ok("upload", "src", "--recursive", "--as", "v/")
    put("notes.txt", b"a second version of the notes")
    put("gone.txt", b"purged later")
    vault_cli.ok("upload", "src", "--recursive", "--as", "v/")
    vault_cli.ok("rm", "--purge", "v/gone.txt")
    del expected["v/gone.txt"]
    # A password set and removed again: re-encrypted into a new object, then rewrapped.
    vault_cli.ok("password", "set", "v/big.bin", env=pw)
    vault_cli.ok("password", "remove", "v/big.bin", env=pw)
    # A protected file: the reader has no password and must say it skipped it.
    write(vault_cli.cwd / "will.txt", b"my will")
    vault_cli.ok("upload", "will.txt", "--password", env=pw)
    vault_cli.ok("keys", "add", env={"LIVEDATA_NEW_PASSPHRASE": "a second passphrase"})

    vault = read_vault(store_dir, PASSPHRASE)
    assert vault.contents == expected
    assert vault.skipped == ["will.txt"]
    assert vault.journals >= 6 and vault.records >= len(expected) + 3
    # The second slot opens it too; a wrong passphrase opens nothing.
    assert read_vault(store_dir, "a second passphrase").contents == expected
    with pytest.raises(ReadError):
        read_vault(store_dir, "not the passphrase")


def test_a_tampered_member_is_an_error_for_the_reader_too(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.txt", b"some text to flip a bit in")
    vault_cli.ok("upload", "a.txt")
    (pack,) = [p for p in (store_dir / "data").rglob("*") if p.is_file()]
    data = bytearray(pack.read_bytes())
    data[110] ^= 1  # inside the first segment
    pack.write_bytes(bytes(data))
    with pytest.raises(ReadError):
        read_vault(store_dir, PASSPHRASE)
