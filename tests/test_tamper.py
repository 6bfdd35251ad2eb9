"""What the store hands back is authenticated before any plaintext leaves:
tampering gives exit 5, no output file, and leaves the rest of the vault alone."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli, assert_one_line_error, data_objects, write

SEG = 1024 * 1024 + 16  # default segment plus its tag
HEADER = 102


@pytest.fixture
def two_files(vault_cli: Cli, store_dir: Path) -> dict[str, Any]:
    big = os.urandom(3 * 1024 * 1024 + 500)
    small = b"untouched neighbour"
    write(vault_cli.cwd / "big.bin", big)
    write(vault_cli.cwd / "small.txt", small)
    ids = {}
    for name in ("big.bin", "small.txt"):
        ids[name] = vault_cli.ok("upload", name, "--json").json()["items"][0]["id"]
    objs = {}
    for name in ids:
        info = vault_cli.ok("info", name, "--json").json()
        objs[name] = next(p for p in data_objects(store_dir) if p.name == (info["pack"] or info["object"]))
    return {"big": big, "small": small, "objs": objs}


def _assert_rejected(cli: Cli, fx: dict[str, Any]) -> None:
    r = cli("download", "big.bin", "-o", "out.bin")
    assert_one_line_error(r, 5)
    assert not (cli.cwd / "out.bin").exists()
    assert not list(cli.cwd.glob(".out.bin*")), "no temporary file left behind"
    # The neighbour is still fine.
    assert cli.ok("download", "small.txt", "-o", "-").stdout == fx["small"]


def _mutate(path: Path, fn: Any) -> None:
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(fn(data)))


@pytest.mark.parametrize("offset", [0, 4, 5, 6, 40, 70, 101, HEADER, HEADER + SEG - 1, HEADER + SEG, -1, -17])
def test_flipped_byte(vault_cli: Cli, two_files: dict[str, Any], offset: int) -> None:
    def flip(d: bytearray) -> bytearray:
        d[offset] ^= 0x01
        return d

    _mutate(two_files["objs"]["big.bin"], flip)
    _assert_rejected(vault_cli, two_files)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("truncated mid-segment", lambda d: d[:-100]),
        ("truncated at segment boundary", lambda d: d[: HEADER + 3 * SEG]),
        ("header only", lambda d: d[:HEADER]),
        ("empty", lambda d: d[:0]),
        ("segment dropped", lambda d: d[: HEADER + SEG] + d[HEADER + 2 * SEG :]),
        ("segment duplicated", lambda d: d[: HEADER + 2 * SEG] + d[HEADER + SEG :]),
        ("segments swapped", lambda d: d[:HEADER] + d[HEADER + SEG : HEADER + 2 * SEG] + d[HEADER : HEADER + SEG] + d[HEADER + 2 * SEG :]),
        ("extended", lambda d: d + b"\x00" * 16),
    ],
)
def test_structural_damage(vault_cli: Cli, two_files: dict[str, Any], name: str, fn: Any) -> None:
    _mutate(two_files["objs"]["big.bin"], fn)
    _assert_rejected(vault_cli, two_files)


def test_headers_swapped_between_files(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    big, small = two_files["objs"]["big.bin"], two_files["objs"]["small.txt"]
    b, s = big.read_bytes(), small.read_bytes()
    big.write_bytes(s[:HEADER] + b[HEADER:])
    _assert_rejected_both(vault_cli)


def test_record_pointing_at_another_objects_data(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    big, small = two_files["objs"]["big.bin"], two_files["objs"]["small.txt"]
    big.write_bytes(small.read_bytes())  # the store swaps one object's content for another's
    _assert_rejected_both(vault_cli)


def _assert_rejected_both(cli: Cli) -> None:
    r = cli("download", "big.bin", "-o", "out.bin")
    assert_one_line_error(r, 5)
    assert not (cli.cwd / "out.bin").exists()


def test_missing_object_is_reported(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    two_files["objs"]["big.bin"].unlink()
    assert_one_line_error(vault_cli("download", "big.bin", "-o", "out.bin"), 3)
    assert not (vault_cli.cwd / "out.bin").exists()


def test_stdout_download_of_tampered_data_exits_5(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    _mutate(two_files["objs"]["big.bin"], lambda d: d[:-1])
    r = vault_cli("download", "big.bin", "-o", "-")
    assert r.code == 5
    # Only whole authenticated segments were released.
    assert len(r.stdout) % (1024 * 1024) == 0 and r.stdout == two_files["big"][: len(r.stdout)]


def test_verify_finds_damage(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    vault_cli.ok("verify")
    vault_cli.ok("verify", "--data")
    _mutate(two_files["objs"]["big.bin"], lambda d: d[:-1])
    r = vault_cli("verify", "--json")
    assert r.code == 5  # size no longer matches the record
    r = vault_cli("verify", "--data", "--json")
    assert r.code == 5
    problems = r.json()["problems"]
    assert [p["path"] for p in problems] == ["big.bin"]


def test_verify_header_check_catches_header_flip(vault_cli: Cli, two_files: dict[str, Any]) -> None:
    def flip(d: bytearray) -> bytearray:
        d[50] ^= 0x80
        return d

    _mutate(two_files["objs"]["big.bin"], flip)
    assert vault_cli("verify").code == 5


def test_prefix_download_goes_past_a_damaged_file(vault_cli: Cli, store_dir: Path) -> None:
    for name in ("a", "b", "c"):
        write(vault_cli.cwd / "t" / name, name * 100)
    vault_cli.ok("upload", "t", "-r")
    info = vault_cli.ok("info", "t/b", "--json").json()
    assert info["pack"], "small files share a pack"
    victim = next(p for p in data_objects(store_dir) if p.name == info["pack"])
    end = info["offset"] + info["length"]  # b ends with its final tag

    def flip(d: bytearray) -> bytearray:
        d[end - 1] ^= 1
        return d

    _mutate(victim, flip)
    r = vault_cli("download", "t/", "-o", "restore", "--json")
    assert r.code == 8
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [(i["source"], i["exit_code"]) for i in failed] == [("t/b", 5)]
    assert (vault_cli.cwd / "restore" / "a").read_text() == "a" * 100
    assert not (vault_cli.cwd / "restore" / "b").exists()


def test_tampered_journal_is_refused(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    journal = next((store_dir / "journal").iterdir())
    _mutate(journal, lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    r = vault_cli("sync", "--rebuild")
    assert_one_line_error(r, 5)


def test_foreign_journal_is_refused(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    """A journal from another vault (another key) dropped into the store."""
    other_home = str(tmp_path / "other")
    other_store = tmp_path / "other-store"
    env = {"LIVEDATA_HOME": other_home}
    vault_cli.ok("init", "--store", str(other_store), env=env)
    write(vault_cli.cwd / "evil.txt", "evil")
    vault_cli.ok("upload", "evil.txt", env=env)
    journal = next((other_store / "journal").iterdir())
    (store_dir / "journal").mkdir(exist_ok=True)
    (store_dir / "journal" / journal.name).write_bytes(journal.read_bytes())
    assert_one_line_error(vault_cli("sync"), 5)


def test_malicious_names_never_escape_the_target(vault_cli: Cli, open_vault: Any, tmp_path: Path) -> None:
    """A record naming '../../x' (from an edited index or an old client) is refused on restore."""
    write(vault_cli.cwd / "ok.txt", "fine")
    vault_cli.ok("upload", "ok.txt")
    vault = open_vault()
    good = vault.index.versions_of("ok.txt")[0]
    evil_paths = ["d/../../escape.txt", "d//../escape2.txt"]
    records = []
    for i, p in enumerate(evil_paths):
        records.append(
            {
                "t": "put", "vid": f"{i:032x}", "path": p, "object": good.object, "length": good.length,
                "size": good.size, "hash": good.hash, "header_hash": good.header_hash,
                "wrapped_key": good.wrapped_key.hex(), "key_id": good.key_id, "created": time.time(),
            }
        )
    vault._write_journal(records)
    r = vault_cli("download", "d/", "-o", "restore", "--json")
    assert r.code in (5, 8)
    assert not (vault_cli.cwd / "escape.txt").exists()
    assert not (vault_cli.cwd / "escape2.txt").exists()
    assert not list(tmp_path.rglob("escape*"))


def test_symlink_in_target_cannot_redirect_writes(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "t" / "sub" / "f.txt", "data")
    vault_cli.ok("upload", "t", "-r")
    outside = tmp_path / "outside"
    outside.mkdir()
    restore = vault_cli.cwd / "restore"
    restore.mkdir()
    (restore / "sub").symlink_to(outside)
    r = vault_cli("download", "t/", "-o", "restore")
    assert r.code == 5
    assert list(outside.iterdir()) == []
