"""``password set`` on every store kind: afterwards nothing the store holds
opens with a data key from any journal record and the vault key alone."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import PASSPHRASE, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def _opened_with_vault_key(store: Any) -> list[bytes]:
    """Every plaintext that data keys unwrapped from any record (tried against
    every object id named anywhere) get out of any stretch of any data object."""
    from livedata_cli import journal
    from livedata_cli.crypto import container, filepass
    from livedata_cli.crypto.wrap import unwrap_data_key
    from livedata_cli.errors import IntegrityError
    from livedata_cli.keys.slots import StoreConfig
    from livedata_cli.keys.unlock import open_with_secret

    cfg = StoreConfig.read(store)
    master, _slot = open_with_secret(store, cfg, PASSPHRASE)
    records = [r for name in store.list("journal/") for r in journal.decode(master, cfg.vault_id, name, store.get_bytes(name))]
    ids = {r["object"] for r in records if r.get("object")}
    lengths = {int(r["length"]) for r in records if r.get("length")}
    keys = []
    for r in records:
        for oid in ids if r.get("wrapped_key") else ():
            try:
                inner = unwrap_data_key(master, cfg.vault_id, oid, bytes.fromhex(r["wrapped_key"]))
            except IntegrityError:
                continue
            if not filepass.is_envelope(inner):
                keys.append(inner)
    found = []
    for name in store.list("data/"):
        blob = store.get_bytes(name)
        starts = [i for i in range(len(blob)) if blob.startswith(container.MAGIC, i)]
        for n, start in enumerate(starts):
            for end in sorted({*starts[n + 1 :], len(blob), *(start + x for x in lengths)}):
                for key in keys:
                    out = io.BytesIO()
                    try:
                        container.decrypt_stream(key, io.BytesIO(blob[start:end]), out)
                    except IntegrityError:
                        continue
                    found.append(out.getvalue())
    return found


def test_password_set_leaves_nothing_the_vault_key_opens(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    pw = {"LIVEDATA_FILE_PASSWORD": "a file password"}
    small, big, other = b"a small secret " * 10, os.urandom(1024 * 1024 + 77), b"not secret at all"
    write(cli.cwd / "t" / "small.txt", small)
    write(cli.cwd / "t" / "big.bin", big)
    write(cli.cwd / "t" / "other.txt", other)
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    with kind_vault.raw() as store:
        assert {small, big} <= set(_opened_with_vault_key(store))  # before: the vault key opens them
    cli.ok("password", "set", "t/small.txt", env=pw)
    cli.ok("password", "set", "t/big.bin", env=pw)
    with kind_vault.raw() as store:
        opened = _opened_with_vault_key(store)
    assert small not in opened and big not in opened
    assert other in opened
    assert cli.ok("download", "t/big.bin", "-o", "-", env=pw).stdout == big
    assert cli.ok("download", "t/other.txt", "-o", "-").stdout == other
    assert_one_line_error(cli("download", "t/small.txt", "-o", "-"), 4)
    second = kind_vault.other_machine()
    assert second.ok("download", "t/small.txt", "-o", "-", env=pw).stdout == small
