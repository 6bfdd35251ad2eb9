"""``livedata lock --index``: the local index encrypted at rest; search and ls then need the vault key."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.subprocess

SECRET_NAME = "merger-plans-zephyr.txt"
NO_KEY = {"LIVEDATA_PASSPHRASE": None}


def _home_bytes(home: Path) -> bytes:
    """Every file of the home but the store (the store holds only ciphertext anyway)."""
    store = home / "store"
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file() and store not in p.parents)


def test_lock_index_encrypts_the_index_and_search_and_ls_need_the_key(vault_cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(vault_cli.cwd / SECRET_NAME, "the plan\n")
    vault_cli.ok("upload", SECRET_NAME, "--tag", "quillfeather")
    vault_cli.ok("note", SECRET_NAME, "ask the zanzibar desk")
    assert SECRET_NAME.encode() in _home_bytes(home)  # plaintext at rest before

    assert vault_cli.ok("lock", "--index", "--json").json()["index_encrypted"] is True
    assert not (home / "index.sqlite").exists() and (home / "index.sqlite.locked").exists()
    assert oct((home / "index.sqlite.locked").stat().st_mode & 0o777) == "0o600"
    at_rest = _home_bytes(home)
    for needle in (SECRET_NAME, "merger", "quillfeather", "zanzibar"):
        assert needle.encode() not in at_rest, needle

    # Without the key: exit 4, and no fresh empty index appears beside the encrypted one.
    for args in (("search", "merger"), ("ls",), ("info", SECRET_NAME)):
        r = vault_cli(*args, env=NO_KEY)
        assert_one_line_error(r, 4)
        assert not (home / "index.sqlite").exists()
    assert_one_line_error(vault_cli("search", "merger", env={"LIVEDATA_PASSPHRASE": "wrong"}), 4)
    assert not (home / "index.sqlite").exists() and (home / "index.sqlite.locked").exists()
    checks = {c["name"]: c for c in vault_cli("doctor", "--json", env=NO_KEY).json()["checks"]}
    assert checks["index"]["status"] == "ok" and "encrypted" in checks["index"]["message"]
    assert not (home / "index.sqlite").exists()

    # With the key: search opens it, and it stays open until the next lock --index.
    found = vault_cli.ok("search", "zanzibar", "--json").json()
    assert [h["path"] for h in found["results"]] == [SECRET_NAME]
    assert (home / "index.sqlite").exists() and not (home / "index.sqlite.locked").exists()
    assert vault_cli.ok("search", "quillfeather", env=NO_KEY).out.strip()

    vault_cli.ok("lock", "--index")
    vault_cli.ok("lock", "--index")  # already encrypted: nothing to do
    assert [e["path"] for e in vault_cli.ok("ls", "--json").json()] == [SECRET_NAME]
    assert not (home / "index.sqlite.locked").exists()
    assert vault_cli.ok("audit", "verify", "--json").json()["intact"]


def test_a_changed_encrypted_index_is_exit_5_and_kept(vault_cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    vault_cli.ok("lock", "--index")
    locked = home / "index.sqlite.locked"
    data = bytearray(locked.read_bytes())
    data[len(data) // 2] ^= 1
    locked.write_bytes(bytes(data))
    assert_one_line_error(vault_cli("ls"), 5)
    assert not (home / "index.sqlite").exists() and locked.read_bytes() == bytes(data)
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")]
