"""What the store hands back is authenticated before any plaintext leaves:
tampering gives exit 5, no output file, and leaves the rest of the vault alone."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

SEG = 1024 * 1024 + 16  # default segment plus its tag
HEADER = 102

# Each damage case runs on the folder store; test_damage_on_every_store_kind runs
# a selection of them on one vault per store kind (a server start each, not one a case).
FOLDER = pytest.mark.parametrize("kind_vault", ["folder"], indirect=True)


@pytest.fixture
def two_files(kind_vault: KindVault) -> dict[str, Any]:
    """Two files on the store kind under test; ``objs`` names their store objects."""
    cli = kind_vault.cli
    big = os.urandom(3 * 1024 * 1024 + 500)
    small = b"untouched neighbour"
    write(cli.cwd / "big.bin", big)
    write(cli.cwd / "small.txt", small)
    objs = {}
    for name in ("big.bin", "small.txt"):
        cli.ok("upload", name)
        info = cli.ok("info", name, "--json").json()
        objs[name] = "data/" + (info["pack"] or info["object"])
    return {"big": big, "small": small, "objs": objs, "kv": kind_vault, "cli": cli}


def _edit(fx: dict[str, Any], name: str, fn: Any) -> None:
    """The store hands back ``fn(bytes)`` for that file's object from now on."""
    kv: KindVault = fx["kv"]
    key = fx["objs"][name]
    with kv.raw() as store:
        store.put_bytes(key, bytes(fn(bytearray(store.get_bytes(key)))))


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


@FOLDER
@pytest.mark.parametrize("offset", [0, 4, 5, 6, 40, 70, 101, HEADER, HEADER + SEG - 1, HEADER + SEG, -1, -17])
def test_flipped_byte(two_files: dict[str, Any], offset: int) -> None:
    def flip(d: bytearray) -> bytearray:
        d[offset] ^= 0x01
        return d

    _edit(two_files, "big.bin", flip)
    _assert_rejected(two_files["cli"], two_files)


@FOLDER
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
def test_structural_damage(two_files: dict[str, Any], name: str, fn: Any) -> None:
    _edit(two_files, "big.bin", fn)
    _assert_rejected(two_files["cli"], two_files)


def _object(fx: dict[str, Any], name: str) -> bytes:
    with fx["kv"].raw() as store:
        return bytes(store.get_bytes(fx["objs"][name]))


@FOLDER
def test_headers_swapped_between_files(two_files: dict[str, Any]) -> None:
    s = _object(two_files, "small.txt")
    _edit(two_files, "big.bin", lambda b: s[:HEADER] + b[HEADER:])
    _assert_rejected_both(two_files["cli"])


@FOLDER
def test_record_pointing_at_another_objects_data(two_files: dict[str, Any]) -> None:
    s = _object(two_files, "small.txt")
    _edit(two_files, "big.bin", lambda b: s)  # the store swaps one object's content for another's
    _assert_rejected_both(two_files["cli"])


def _assert_rejected_both(cli: Cli) -> None:
    r = cli("download", "big.bin", "-o", "out.bin")
    assert_one_line_error(r, 5)
    assert not (cli.cwd / "out.bin").exists()


@FOLDER
def test_missing_object_is_reported(two_files: dict[str, Any]) -> None:
    vault_cli = two_files["cli"]
    with two_files["kv"].raw() as store:
        store.delete(two_files["objs"]["big.bin"])
    assert_one_line_error(vault_cli("download", "big.bin", "-o", "out.bin"), 3)
    assert not (vault_cli.cwd / "out.bin").exists()


@FOLDER
def test_stdout_download_of_tampered_data_exits_5(two_files: dict[str, Any]) -> None:
    _edit(two_files, "big.bin", lambda d: d[:-1])
    r = two_files["cli"]("download", "big.bin", "-o", "-")
    assert r.code == 5
    # Only whole authenticated segments were released.
    assert len(r.stdout) % (1024 * 1024) == 0 and r.stdout == two_files["big"][: len(r.stdout)]


@FOLDER
def test_verify_finds_damage(two_files: dict[str, Any]) -> None:
    vault_cli = two_files["cli"]
    vault_cli.ok("verify")
    vault_cli.ok("verify", "--data")
    _edit(two_files, "big.bin", lambda d: d[:-1])
    r = vault_cli("verify", "--json")
    assert r.code == 5  # size no longer matches the record
    r = vault_cli("verify", "--data", "--json")
    assert r.code == 5
    problems = r.json()["problems"]
    assert [p["path"] for p in problems] == ["big.bin"]


@FOLDER
def test_verify_header_check_catches_header_flip(two_files: dict[str, Any]) -> None:
    def flip(d: bytearray) -> bytearray:
        d[50] ^= 0x80
        return d

    _edit(two_files, "big.bin", flip)
    assert two_files["cli"]("verify").code == 5


def test_prefix_download_goes_past_a_damaged_file(kind_vault: KindVault) -> None:
    vault_cli = kind_vault.cli
    for name in ("a", "b", "c"):
        write(vault_cli.cwd / "t" / name, name * 100)
    vault_cli.ok("upload", "t", "-r")
    info = vault_cli.ok("info", "t/b", "--json").json()
    assert info["pack"], "small files share a pack on every store kind"
    # b's last byte (its final tag), in its pack or in an object of its own
    end = info["offset"] + info["length"] if info["pack"] else 0

    def flip(d: bytearray) -> bytearray:
        d[end - 1] ^= 1
        return d

    _edit({"kv": kind_vault, "objs": {"b": "data/" + (info["pack"] or info["object"])}}, "b", flip)
    r = vault_cli("download", "t/", "-o", "restore", "--json")
    assert r.code == 8
    failed = [i for i in r.json()["items"] if i["status"] == "failed"]
    assert [(i["source"], i["exit_code"]) for i in failed] == [("t/b", 5)]
    assert (vault_cli.cwd / "restore" / "a").read_text() == "a" * 100
    assert not (vault_cli.cwd / "restore" / "b").exists()


def test_tampered_journal_is_refused(kind_vault: KindVault) -> None:
    vault_cli = kind_vault.cli
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    journal = kind_vault.keys("journal/")[0]
    _edit({"kv": kind_vault, "objs": {"j": journal}}, "j", lambda d: d[:-1] + bytes([d[-1] ^ 1]))
    r = vault_cli("sync", "--rebuild")
    assert_one_line_error(r, 5)


def test_damage_on_every_store_kind(two_files: dict[str, Any]) -> None:
    """What each store kind hands back is checked the same way: one vault, several
    damages in turn, the original bytes put back after each."""
    cli = two_files["cli"]
    original = _object(two_files, "big.bin")
    small = _object(two_files, "small.txt")

    def flip(offset: int) -> Any:
        def fn(d: bytearray) -> bytearray:
            d[offset] ^= 1
            return d

        return fn

    damages = [  # header, a segment boundary, truncation, reordering, extension, another object
        flip(5), flip(HEADER + SEG),
        lambda d: d[:-100],
        lambda d: d[:HEADER] + d[HEADER + SEG : HEADER + 2 * SEG] + d[HEADER : HEADER + SEG] + d[HEADER + 2 * SEG :],
        lambda d: d + b"\x00" * 16,
        lambda d: small[:HEADER] + d[HEADER:],
    ]
    for damage in damages:
        _edit(two_files, "big.bin", damage)
        assert_one_line_error(cli("download", "big.bin", "-o", "out.bin"), 5)
        assert not (cli.cwd / "out.bin").exists()
        _edit(two_files, "big.bin", lambda d: original)
    assert cli.ok("download", "small.txt", "-o", "-").stdout == two_files["small"]
    assert cli.ok("download", "big.bin", "-o", "-").stdout == two_files["big"]
    _edit(two_files, "big.bin", lambda d: d[:-1])
    assert cli("verify", "--data").code == 5
    r = cli("download", "big.bin", "-o", "-")
    assert r.code == 5 and len(r.stdout) % (1024 * 1024) == 0 and r.stdout == two_files["big"][: len(r.stdout)]
    with two_files["kv"].raw() as store:
        store.delete(two_files["objs"]["big.bin"])
    assert_one_line_error(cli("download", "big.bin", "-o", "out.bin"), 3)
    assert not (cli.cwd / "out.bin").exists()


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
