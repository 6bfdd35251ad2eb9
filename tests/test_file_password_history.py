"""File passwords against the store's history: after ``password set`` the vault
key, and after ``password change`` the old password, open nothing the store
still holds, even with every journal record ever written."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess

PW1 = "the first file password"
PW2 = "the second file password"


def _store(cli: Cli) -> Path:
    return Path(cli.env["LIVEDATA_HOME"]) / "store"


def _records(store: Path, master: bytes, vault_id: str) -> list[dict[str, Any]]:
    from livedata_cli import journal

    records: list[dict[str, Any]] = []
    for f in sorted((store / "journal").rglob("*")):
        if f.is_file():
            records += journal.decode(master, vault_id, f.relative_to(store).as_posix(), f.read_bytes())
    return records


def _candidate_keys(store: Path, master: bytes, vault_id: str, passwords: list[str]) -> list[bytes]:
    """Every data key an attacker holding the vault key (and these passwords)
    gets out of every journal record in the store: each wrapped key is tried
    against every object id any record names."""
    from livedata_cli.crypto import filepass
    from livedata_cli.crypto.wrap import unwrap_data_key
    from livedata_cli.errors import IntegrityError

    records = _records(store, master, vault_id)
    ids = {r["object"] for r in records if r.get("object")}
    keys: list[bytes] = []
    for r in records:
        if not r.get("wrapped_key"):
            continue
        for oid in ids:
            try:
                inner = unwrap_data_key(master, vault_id, oid, bytes.fromhex(r["wrapped_key"]))
            except IntegrityError:
                continue
            if not filepass.is_envelope(inner):
                keys.append(inner)
                continue
            params, salt, _lock = filepass.envelope_params(inner)
            for pw in passwords:
                found = filepass.open_envelope(filepass.PasswordKey.derive(pw, params, salt), vault_id, oid, inner)
                if found is not None:
                    keys.append(found)
    return keys


def _everything_decryptable(store: Path, keys: list[bytes], lengths: set[int]) -> list[bytes]:
    """Every plaintext these keys get out of any stretch of any data object that
    starts at a container magic and ends at the next one, at the object's end,
    or after any length a record ever gave."""
    from livedata_cli.crypto import container
    from livedata_cli.errors import IntegrityError

    found: list[bytes] = []
    for obj in data_objects(store):
        blob = obj.read_bytes()
        starts = [i for i in range(len(blob)) if blob.startswith(container.MAGIC, i)]
        for n, start in enumerate(starts):
            ends = {*starts[n + 1 :], len(blob), *(start + x for x in lengths if start + x <= len(blob))}
            for end in sorted(ends):
                for key in keys:
                    out = io.BytesIO()
                    try:
                        container.decrypt_stream(key, io.BytesIO(blob[start:end]), out)
                    except IntegrityError:
                        continue
                    found.append(out.getvalue())
    return found


def _lengths(store: Path, vault: Any) -> set[int]:
    return {int(r["length"]) for r in _records(store, vault.master_key, vault.vault_id) if r.get("length")}


def _vault_with_history(cli: Cli) -> dict[str, bytes]:
    """A small file packed with others (two versions), and a big file of its own."""
    contents = {
        "will.txt": b"my last will, first draft " * 40,
        "a.txt": b"an unrelated small file",
        "b.txt": b"another unrelated small file",
        "big.bin": os.urandom(1024 * 1024 + 4096),
    }
    for name in ("will.txt", "a.txt", "b.txt"):
        write(cli.cwd / "small" / name, contents[name])
    cli.ok("upload", "small", "--recursive", "--as", "s/")
    write(cli.cwd / "small" / "will.txt", b"my last will, second draft " * 40)
    write(cli.cwd / "small" / "c.txt", b"a third small file in the second pack")
    cli.ok("upload", "small", "--recursive", "--as", "s/")
    write(cli.cwd / "big.bin", contents["big.bin"])
    cli.ok("upload", "big.bin")
    return contents


def test_after_set_the_vault_key_and_every_journal_open_nothing_protected(vault_cli: Cli, open_vault: Any) -> None:
    contents = _vault_with_history(vault_cli)
    secret = [contents["will.txt"], b"my last will, second draft " * 40, contents["big.bin"]]
    vault_cli.ok("password", "set", "s/will.txt", env={"LIVEDATA_FILE_PASSWORD": PW1})
    vault_cli.ok("password", "set", "big.bin", env={"LIVEDATA_FILE_PASSWORD": PW1})
    vault = open_vault()
    store = _store(vault_cli)
    keys = _candidate_keys(store, vault.master_key, vault.vault_id, [])
    opened = _everything_decryptable(store, keys, _lengths(store, vault))
    assert not [p for p in opened if p in secret]
    # The unprotected files around them still open with the vault key, there and through the CLI.
    assert {contents["a.txt"], contents["b.txt"]} <= set(opened)
    pw = {"LIVEDATA_FILE_PASSWORD": PW1}
    assert vault_cli.ok("download", "s/will.txt", "-o", "-", env=pw).stdout == secret[1]
    assert vault_cli.ok("download", "s/will.txt", "--version", "1", "-o", "-", env=pw).stdout == secret[0]
    assert vault_cli.ok("download", "big.bin", "-o", "-", env=pw).stdout == secret[2]
    assert vault_cli.ok("download", "s/a.txt", "-o", "-").stdout == contents["a.txt"]
    assert vault_cli.ok("download", "s/c.txt", "-o", "-").stdout == b"a third small file in the second pack"
    assert_one_line_error(vault_cli("download", "s/will.txt", "-o", "-"), 4)
    assert vault_cli.ok("verify", "--data", "--json").json()["problems"] == []


def test_after_change_the_old_password_opens_nothing(vault_cli: Cli, open_vault: Any, tmp_path: Path) -> None:
    contents = _vault_with_history(vault_cli)
    write(vault_cli.cwd / "deed.txt", b"the deed to the house")
    vault_cli.ok("upload", "deed.txt", "--password", env={"LIVEDATA_FILE_PASSWORD": PW1})
    vault_cli.ok("password", "set", "s/will.txt", env={"LIVEDATA_FILE_PASSWORD": PW1})
    vault_cli.ok("password", "set", "big.bin", env={"LIVEDATA_FILE_PASSWORD": PW1})
    for path in ("s/will.txt", "big.bin", "deed.txt"):
        vault_cli.ok("password", "change", path, env={"LIVEDATA_FILE_PASSWORD": PW1, "LIVEDATA_NEW_FILE_PASSWORD": PW2})
    secret = [contents["will.txt"], b"my last will, second draft " * 40, contents["big.bin"], b"the deed to the house"]
    vault = open_vault()
    store = _store(vault_cli)
    lengths = _lengths(store, vault)
    opened = _everything_decryptable(store, _candidate_keys(store, vault.master_key, vault.vault_id, [PW1]), lengths)
    assert not [p for p in opened if p in secret]
    # The new password opens all of it, here and from a second home rebuilt from the store.
    with_new = _everything_decryptable(store, _candidate_keys(store, vault.master_key, vault.vault_id, [PW2]), lengths)
    assert all(s in with_new for s in secret)
    other = {"LIVEDATA_HOME": str(tmp_path / "home2"), "LIVEDATA_FILE_PASSWORD": PW2}
    vault_cli.ok("init", "--store", str(store), env=other)
    assert vault_cli.ok("download", "s/will.txt", "-o", "-", env=other).stdout == secret[1]
    assert vault_cli.ok("download", "deed.txt", "-o", "-", env=other).stdout == secret[3]
    assert vault_cli.ok("download", "s/b.txt", "-o", "-", env=other).stdout == contents["b.txt"]
    assert_one_line_error(vault_cli("download", "big.bin", "-o", "-", env={**other, "LIVEDATA_FILE_PASSWORD": PW1}), 4)


def test_remove_only_rewraps(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "will.txt", b"short will")
    vault_cli.ok("upload", "will.txt", "--password", env={"LIVEDATA_FILE_PASSWORD": PW1})
    before = {p.name for p in data_objects(_store(vault_cli))}
    vault_cli.ok("password", "remove", "will.txt", env={"LIVEDATA_FILE_PASSWORD": PW1})
    assert {p.name for p in data_objects(_store(vault_cli))} == before
    assert vault_cli.ok("download", "will.txt", "-o", "-").stdout == b"short will"
