"""Store objects of the wrong shape, as a hostile or damaged store may hold them:
key slots with fields of the wrong type, folders where objects should be, and
config objects with missing or wrongly typed fields.  Each is a one-line
error with its documented code (5: the store is damaged), or a skipped slot
with a warning; never exit 1 and never a traceback."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error, data_objects, write

pytestmark = pytest.mark.inprocess


def _real_slot(store: Path) -> dict[str, Any]:
    path = next((store / "keys").glob("pass-*"))
    slot: dict[str, Any] = json.loads(path.read_bytes())
    return slot


# -- 1. key slots with fields of the wrong type ------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING = _Missing()  # the field is removed
SLOT_DAMAGE: list[tuple[str, Any]] = [
    ("kdf", None),
    ("kdf", []),
    ("kdf", 5),
    ("kdf", "argon2id"),
    ("kdf", {"alg": "argon2id", "m": None, "t": 1, "p": 1}),
    ("slot", 5),
    ("slot", None),
    ("kind", 5),
    ("kind", None),
    ("kind", "magic"),
    ("salt", 5),
    ("salt", None),
    ("wrapped", 5),
    ("wrapped", []),
    ("created", "yesterday"),
    ("created", None),
    ("created", True),
    *[(f, MISSING) for f in ("slot", "kind", "kdf", "salt", "wrapped", "created")],
]


@pytest.mark.parametrize(("field", "value"), SLOT_DAMAGE, ids=[f"{f}={v!r}"[:30] for f, v in SLOT_DAMAGE])
def test_a_slot_with_a_field_of_the_wrong_type_is_skipped(
    vault_cli: Cli, store_dir: Path, tmp_path: Path, field: str, value: Any
) -> None:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")
    slot = _real_slot(store_dir)
    if value is MISSING:
        del slot[field]
    else:
        slot[field] = value
    (store_dir / "keys" / "pass-evil").write_text(json.dumps(slot))
    other = {"LIVEDATA_HOME": str(tmp_path / "fresh-home")}
    r = vault_cli.ok("init", "--store", str(store_dir), env=other)
    assert "livedata: warning: key slot 'pass-evil' skipped" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert vault_cli.ok("download", "a.txt", "-o", "-", env=other).stdout == b"hello"


@pytest.mark.parametrize("content", [b"null", b"[]", b"5", b'"slot"', b"[" * 100_000])
def test_a_slot_that_is_not_an_object_is_skipped(vault_cli: Cli, store_dir: Path, tmp_path: Path, content: bytes) -> None:
    (store_dir / "keys" / "pass-evil").write_bytes(content)
    r = vault_cli.ok("init", "--store", str(store_dir), env={"LIVEDATA_HOME": str(tmp_path / "fresh-home")})
    assert "livedata: warning: key slot 'pass-evil' skipped" in r.stderr, r.stderr


def test_a_folder_among_the_slots_is_skipped(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    (store_dir / "keys" / "pass-evil").mkdir()
    r = vault_cli.ok("init", "--store", str(store_dir), env={"LIVEDATA_HOME": str(tmp_path / "fresh-home")})
    assert "livedata: warning: key slot 'pass-evil' skipped" in r.stderr, r.stderr


def test_the_remembered_slot_turned_into_a_folder_falls_back_to_the_others(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")  # this home remembers the slot that opened the vault
    vault_cli.ok("keys", "add", env={"LIVEDATA_NEW_PASSPHRASE": "second passphrase"})
    slots = sorted((store_dir / "keys").iterdir())
    last = json.loads((vault_cli.cwd.parent / "home" / "last-slot.json").read_text())
    remembered = next(p for p in slots if p.name in last.values())
    remembered.unlink()
    remembered.mkdir()
    r = vault_cli.ok("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": "second passphrase"})
    assert r.stdout == b"hello"


# -- 2. a folder in journal/ -------------------------------------------------------------
PLANTED = "journal/09999999999999999999-aaaaaaaaaaaaaaaa"


@pytest.fixture
def one_file(vault_cli: Cli) -> Cli:
    write(vault_cli.cwd / "a.txt", "hello")
    vault_cli.ok("upload", "a.txt")
    return vault_cli


@pytest.mark.parametrize("shape", ["garbage file", "folder"])
def test_a_folder_in_journal_is_a_damaged_journal(one_file: Cli, store_dir: Path, shape: str) -> None:
    """A folder where a journal is listed is named as damaged, as a garbage file there is."""
    cli = one_file
    if shape == "folder":
        (store_dir / PLANTED).mkdir()
    else:
        (store_dir / PLANTED).write_bytes(b"garbage")
    for args in (["sync"], ["verify"], ["prune"]):
        r = cli(*args)
        assert_one_line_error(r, 5)
        assert PLANTED in r.stderr and "damaged" in r.stderr, r.stderr
    write(cli.cwd / "b.txt", "more")
    r = cli("upload", "b.txt")  # like any damaged journal: named, and work goes on
    assert r.code == 0, r.stderr
    assert f"livedata: warning: journal {PLANTED}" in r.stderr and "Traceback" not in r.stderr


# -- 3. a folder in place of a data object -----------------------------------------------
@pytest.mark.parametrize("shape", ["folder", "fifo"])
def test_a_data_object_that_is_not_a_file_is_exit_5(one_file: Cli, store_dir: Path, shape: str) -> None:
    """Something other than a file where the object should be is damage (a missing
    object is exit 3 on download: tests/test_tamper.py)."""
    cli = one_file
    (obj,) = data_objects(store_dir)
    obj.unlink()
    if shape == "folder":
        obj.mkdir()
    else:
        os.mkfifo(obj)  # never waited on: nobody will ever write to it
    r = cli("download", "a.txt", "-o", "-")
    assert_one_line_error(r, 5)
    assert r.stdout == b""
    r = cli("download", "a.txt", "-o", "out.txt")
    assert_one_line_error(r, 5)
    assert not (cli.cwd / "out.txt").exists()
    assert cli("verify").code == 5


def test_a_file_in_place_of_a_data_folder_is_a_missing_object(one_file: Cli, store_dir: Path) -> None:
    (obj,) = data_objects(store_dir)
    shard = obj.parent
    obj.unlink()
    shard.rmdir()
    shard.write_bytes(b"planted")
    assert_one_line_error(one_file("download", "a.txt", "-o", "-"), 3)  # as tests/test_tamper.py's missing object
    assert one_file("verify").code == 5


# -- 4. config objects of the wrong shape ------------------------------------------------
def _config(store: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((store / "config").read_bytes())
    return data


@pytest.mark.parametrize("content", [b"[]", b"null", b"5", b'"config"', b"[" * 100_000])
def test_a_config_that_is_not_an_object_is_exit_5(one_file: Cli, store_dir: Path, tmp_path: Path, content: bytes) -> None:
    (store_dir / "config").write_bytes(content)
    _assert_damaged_config(one_file, store_dir, tmp_path)


CONFIG_DAMAGE: list[tuple[str, Any]] = [
    ("vault_id", MISSING),
    ("vault_id", None),
    ("vault_id", 5),
    ("key_id", MISSING),
    ("key_id", None),
    ("key_id", 5),
    ("created", MISSING),
    ("created", "yesterday"),
    ("format", MISSING),
    ("format", "1"),
    ("format", True),
    ("format", 1.0),
    ("kms_key_id", 5),
    ("kms_per_object", "yes"),
    ("mac", 5),
    ("previous_keys", 5),
    ("previous_keys", [5]),
    ("previous_keys", [{"key_id": 5, "sealed": "00"}]),
]


@pytest.mark.parametrize(("field", "value"), CONFIG_DAMAGE, ids=[f"{f}={v!r}"[:30] for f, v in CONFIG_DAMAGE])
def test_a_config_field_missing_or_of_the_wrong_type_is_exit_5(
    one_file: Cli, store_dir: Path, tmp_path: Path, field: str, value: Any
) -> None:
    data = _config(store_dir)
    if value is MISSING:
        del data[field]
    else:
        data[field] = value
    (store_dir / "config").write_text(json.dumps(data))
    r = _assert_damaged_config(one_file, store_dir, tmp_path)
    if value is not MISSING:
        assert f"'{field}'" in r.stderr and "wrong type" in r.stderr, r.stderr


def test_a_config_of_a_newer_format_is_still_a_usage_error(one_file: Cli, store_dir: Path) -> None:
    data = _config(store_dir)
    data["format"] = 2
    (store_dir / "config").write_text(json.dumps(data))
    r = one_file("upload", "a.txt", "--as", "b.txt")
    assert_one_line_error(r, 2)
    assert "has format 2; this livedata reads 1" in r.stderr


_homes = itertools.count()


def _assert_damaged_config(cli: Cli, store: Path, tmp_path: Path) -> Any:
    """Upload and verify in the home that made the vault, and an attach from a new
    home: each exit 5 with one line."""
    for args in (["upload", "a.txt", "--as", "b.txt"], ["verify"]):
        r = cli(*args)
        assert r.code == 5, (args, r.code, r.stderr)
        assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr, r.stderr
    fresh = tmp_path / f"fresh-home-{next(_homes)}"
    r = cli("init", "--store", str(store), env={"LIVEDATA_HOME": str(fresh)})
    assert_one_line_error(r, 5)
    return r


# Values of every JSON type; each field is given only those of a type it does not take.
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6
)
ACCEPTS = {
    "vault_id": lambda v: isinstance(v, str),
    "key_id": lambda v: isinstance(v, str),
    "created": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "format": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "suite": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "kms_key_id": lambda v: v is None or isinstance(v, str),
    "kms_per_object": lambda v: isinstance(v, bool),
    "mac": lambda v: v is None or isinstance(v, str),
    "previous_keys": lambda v: v is None or v == [],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_config_fields_of_random_wrong_types_are_exit_5(one_file: Cli, store_dir: Path, tmp_path: Path, data: Any) -> None:
    original = (store_dir / "config").read_bytes()
    field = data.draw(st.sampled_from(sorted(ACCEPTS)))
    value = data.draw(JSON_VALUES.filter(lambda v: not ACCEPTS[field](v)), label=field)
    config = json.loads(original)
    config[field] = value
    (store_dir / "config").write_text(json.dumps(config))
    try:
        _assert_damaged_config(one_file, store_dir, tmp_path)
    finally:
        (store_dir / "config").write_bytes(original)
