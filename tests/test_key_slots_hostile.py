"""Key slots a hostile store planted: KDF parameters beyond the caps, malformed
slots and thousands of them are skipped with a one-line warning, and the slot
that opened the vault last on this machine is tried first (and alone)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess


def _plant(store: Path, name: str, **fields: Any) -> None:
    slot = {
        "slot": name,
        "kind": "passphrase",
        "kdf": {"alg": "argon2id", "m": 1024, "t": 1, "p": 1},
        "salt": os.urandom(16).hex(),
        "wrapped": os.urandom(60).hex(),
        "created": 1.0,
        **fields,
    }
    (store / "keys" / name).write_bytes(json.dumps(slot).encode())


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning: key slot" in line or "key slots;" in line]


def test_slots_beyond_the_caps_are_skipped_with_a_warning(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")
    # Sorted before the real slot, so each is met before it in a fresh home.
    _plant(store_dir, "aaaa-000000000001", kdf={"alg": "argon2id", "m": 1024, "t": 1, "p": 65})
    _plant(store_dir, "aaaa-000000000002", kdf={"alg": "argon2id", "m": 1024, "t": 17, "p": 1})
    _plant(store_dir, "aaaa-000000000003", kdf={"alg": "argon2id", "m": 1024 * 1024 + 1, "t": 1, "p": 1})
    _plant(store_dir, "aaaa-000000000004", kdf={"alg": "scrypt"})
    (store_dir / "keys" / "aaaa-000000000005").write_bytes(b"\xff not json")
    other = {"LIVEDATA_HOME": str(tmp_path / "fresh-home")}
    r = vault_cli.ok("init", "--store", str(store_dir), env=other)
    warned = _warnings(r.stderr)
    assert len(warned) == 5, r.stderr
    assert all(line.startswith("livedata: warning: key slot 'aaaa-") for line in warned)
    assert "p=65" in warned[0] and "t=17" in warned[1] and "m=1048577" in warned[2]
    assert vault_cli.ok("download", "a.txt", "-o", "-", env=other).stdout == b"hello"


def test_the_slot_that_worked_last_is_tried_first_and_alone(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")  # unlocks: this home remembers the slot
    _plant(store_dir, "aaaa-000000000001", kdf={"alg": "argon2id", "m": 1024, "t": 1, "p": 65})
    r = vault_cli.ok("download", "a.txt", "-o", "-")
    assert r.stdout == b"hello" and _warnings(r.stderr) == []  # the other slots were not even read
    # A wrong passphrase still fails cleanly, after the remembered slot and the others.
    r = vault_cli("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": "wrong"})
    assert_one_line_error(r, 4)
    assert len(_warnings(r.stderr)) == 1 and r.stdout == b""


def test_at_most_32_slots_are_read(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")
    for i in range(40):
        _plant(store_dir, f"aaaa-{i:012d}")
    r = vault_cli.ok("download", "a.txt", "-o", "-")  # the remembered slot opens it
    assert r.stdout == b"hello" and _warnings(r.stderr) == []
    # A fresh home reads 32 slots, all planted ones: the store hid the real one.
    r = vault_cli("init", "--store", str(store_dir), env={"LIVEDATA_HOME": str(tmp_path / "fresh")})
    assert_one_line_error(r, 4)
    assert "livedata: warning: the store holds 41 key slots; only 32 are read" in r.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.integers(min_value=-2, max_value=1 << 40),
    t=st.integers(min_value=-2, max_value=1 << 20),
    p=st.integers(min_value=-2, max_value=1 << 20),
)
def test_kdf_bounds_are_checked_before_any_stretching(m: int, t: int, p: int) -> None:
    from livedata_cli.crypto.kdf import Argon2Params

    ok = 8 * p <= m <= 1024 * 1024 and 1 <= t <= 16 and 1 <= p <= 16
    try:
        params = Argon2Params.from_json({"alg": "argon2id", "m": m, "t": t, "p": p})
    except ValueError:
        assert not ok
    else:
        assert ok and (params.memory_kib, params.time_cost, params.parallelism) == (m, t, p)
