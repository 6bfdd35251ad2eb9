"""File names are bytes: any name the OS takes survives upload, a second
machine's rebuild and download byte for byte; listings never let a name drive
the terminal; restores use short temporary names with private modes."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import store_kinds
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, write
from livedata_cli.errors import LivedataError

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

BAD = b"bad-\xff\xfe-name.txt"
TITLE = b"esc-\x1b]0;owned\x07-\n-name"

# Any byte string Linux takes as one file name: 1..255 bytes, no '/' or NUL, not '.' or '..'.
file_names = st.binary(min_size=1, max_size=255).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")
)


def _make(folder: Path, name: bytes, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(os.path.join(os.fsencode(folder), name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _names(folder: Path) -> list[bytes]:
    return sorted(os.listdir(os.fsencode(folder)))


def _terminal_safe(text: bytes) -> None:
    """Output a terminal may show: valid UTF-8, no control character but newlines and tabs."""
    decoded = text.decode("utf-8")  # strict: raw undecodable bytes never reach stdout
    bad = [c for c in decoded if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, decoded


def _examples(kind: str) -> int:
    return 8 if kind == "folder" else 3


def test_any_name_round_trips_byte_for_byte_on_every_store(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    other = kind_vault.other_machine()
    counter = itertools.count()

    @settings(
        max_examples=_examples(kind_vault.kind),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(name=file_names)
    def round_trip(name: bytes) -> None:
        n = next(counter)
        src = cli.cwd / f"src{n}"
        _make(src, name, b"content of " + name)
        up = cli("upload", str(src), "--recursive", "--as", f"n{n}/")
        assert up.code == 0, up.stderr
        # The listing is escaped, and its JSON is strict UTF-8.
        _terminal_safe(cli.ok("ls", f"n{n}/").stdout)
        listed = cli.ok("ls", f"n{n}/", "--json").stdout
        listed.decode("utf-8")
        assert len(json.loads(listed)) == 1
        # A second machine rebuilds its index from the store alone and restores the same bytes.
        other.ok("sync", "--rebuild")
        out = other.cwd / f"out{n}"
        r = other("download", f"n{n}/", "-o", str(out))
        assert r.code == 0, r.stderr
        assert _names(out) == [name]
        assert (Path(os.fsdecode(os.path.join(os.fsencode(out), name)))).read_bytes() == b"content of " + name
        # The name typed on the command line (argv bytes) finds the file too.
        single = other.ok("download", os.fsdecode(f"n{n}/".encode() + name), "-o", "-").stdout
        assert single == b"content of " + name

    round_trip()


def test_a_name_that_is_not_utf8_no_longer_bricks_the_vault(vault_cli: Cli) -> None:
    _make(vault_cli.cwd / "t", BAD, b"hi")
    r = vault_cli("upload", "t", "--recursive")
    assert r.code == 0, r.stderr
    assert vault_cli.ok("ls").stdout == b"t/bad-\\xff\\xfe-name.txt\n"
    vault_cli.ok("sync", "--rebuild")
    write(vault_cli.cwd / "later.txt", "later")
    vault_cli.ok("upload", "later.txt")  # every later command still works
    vault_cli.ok("download", "t/", "-o", "back")
    assert _names(vault_cli.cwd / "back") == [BAD]
    assert vault_cli.ok("ls", "t/", "--json").json()[0]["path"] == "t/bad-\\xff\\xfe-name.txt"


def test_control_characters_in_names_never_reach_the_terminal(vault_cli: Cli) -> None:
    _make(vault_cli.cwd / "t", TITLE, b"x")
    _make(vault_cli.cwd / "t", BAD, b"y")
    up = vault_cli.ok("upload", "t", "--recursive")
    _terminal_safe(up.stderr.encode())
    assert "\\x1b]0;owned\\x07-\\n-name" in up.stderr
    for args in (("ls",), ("ls", "--long"), ("search", "name"), ("info", os.fsdecode(b"t/" + TITLE))):
        r = vault_cli.ok(*args)
        _terminal_safe(r.stdout)
        _terminal_safe(r.stderr.encode())
    assert b"esc-\\x1b]0;owned\\x07-\\n-name" in vault_cli.ok("ls").stdout
    # An error line that names the file is escaped and stays one line.
    r = vault_cli("download", os.fsdecode(b"t/" + TITLE + b"-missing"))
    assert_one_line_error(r, 3)
    _terminal_safe(r.stderr.encode())
    # A restore over an existing, different file: the refusal names it escaped.
    _make(vault_cli.cwd / "out", TITLE, b"different")
    r = vault_cli("download", "t/", "-o", "out")
    assert r.code == 8, r.stderr  # the other file restored
    _terminal_safe(r.stderr.encode())


def test_control_characters_in_tags_and_notes_never_reach_the_terminal(vault_cli: Cli, open_vault: Any) -> None:
    """Tags and notes come from a shared store too: every command that shows
    them escapes their control characters, and a tag that holds the list's
    separator is quoted so that it cannot pass for two."""
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt", "--tag", "plain")
    vault = open_vault()  # as another machine's livedata could: past the command line's checks
    with vault.lock():
        vault.tag("a.txt", ["\x1b]0;owned\x07", "x,y"], remove=False)
    vault.close()
    r = vault_cli.ok("note", "a.txt", "\x1b[31mred\nsecond line\x9b")
    _terminal_safe(r.stderr.encode())
    for args in (("note", "a.txt"), ("info", "a.txt"), ("search", "red"), ("search", "--tag", "plain"),
                 ("stats",), ("ls", "--long"), ("tag", "a.txt", "--remove", "nothing-there")):
        r = vault_cli.ok(*args)
        _terminal_safe(r.stdout)
        _terminal_safe(r.stderr.encode())
    assert "second line" in vault_cli.ok("note", "a.txt").out  # a note keeps its lines
    listed = vault_cli.ok("search", "--tag", "plain").out
    assert "'x,y'" in listed and "\\x1b" in listed  # quoted, escaped
    for bad in ("", " ", "\n", "two\nlines", "\x1b]0;owned\x07", os.fsdecode(b"\xff"), os.fsdecode(b"ok\xfe")):
        assert_one_line_error(vault_cli("tag", "a.txt", bad), 2)
        assert_one_line_error(vault_cli("upload", "a.txt", "--tag", bad), 2)
    r = vault_cli("note", "a.txt", os.fsdecode(b"bad\xfe"))  # bytes that are not UTF-8: not text
    assert_one_line_error(r, 2)
    assert "not UTF-8" in r.stderr
    assert_one_line_error(vault_cli("note", "a.txt", "--append", os.fsdecode(b"\xff")), 2)
    vault_cli.ok("tag", "a.txt", "--remove", "\x1b]0;owned\x07")  # a bad tag stored can be removed
    assert vault_cli.ok("info", "a.txt", "--json").json()["tags"] == ["plain", "x,y"]


def test_names_near_the_file_system_limit_restore(vault_cli: Cli) -> None:
    long_names = [b"x" * 255, b"\xc3\xa9" * 125 + b"e", b"y" * 250]
    for name in long_names:
        _make(vault_cli.cwd / "long", name, name[:10])
    vault_cli.ok("upload", "long", "--recursive")
    vault_cli.ok("download", "long/", "-o", "back")
    assert _names(vault_cli.cwd / "back") == sorted(long_names)
    os.chdir(vault_cli.cwd)  # a single file, to the current folder
    out = vault_cli.cwd / "single"
    out.mkdir()
    r = vault_cli("download", "long/" + "x" * 255, "-o", str(out))
    assert r.code == 0, r.stderr
    assert _names(out) == [b"x" * 255]


def test_a_symlink_target_that_is_not_utf8_round_trips(vault_cli: Cli) -> None:
    folder = vault_cli.cwd / "t"
    folder.mkdir()
    os.symlink(b"../target-\xff", os.path.join(os.fsencode(folder), b"link-\xfe"))
    vault_cli.ok("upload", "t", "--recursive")
    vault_cli.ok("sync", "--rebuild")
    vault_cli.ok("download", "t/", "-o", "back")
    assert os.readlink(os.path.join(os.fsencode(vault_cli.cwd / "back"), b"link-\xfe")) == b"../target-\xff"


def test_restore_temporary_file_is_private_short_and_locked(tmp_path: Path) -> None:
    from livedata_cli import localfs

    target = tmp_path / ("z" * 255)
    seen: dict[str, object] = {}

    def write_data(out: object) -> int:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".livedata-")]
        assert len(temps) == 1
        seen["name"] = temps[0].name
        seen["mode"] = stat.S_IMODE(temps[0].stat().st_mode)
        seen["cleaned"] = localfs.remove_stale_temps(tmp_path)  # a concurrent rerun leaves it alone
        out.write(b"secret")  # type: ignore[attr-defined]
        return 6

    localfs.write_file(target, write_data, mode=0o644, mtime=1_000_000.0)
    assert seen["mode"] == 0o600
    assert len(str(seen["name"])) == 31 and str(seen["name"]).endswith(".part")
    assert seen["cleaned"] == 0
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.stat().st_mtime == 1_000_000.0
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_folder_store_objects_are_0600_and_folders_0700(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.bin", os.urandom(200_000))
    write(vault_cli.cwd / "small.txt", "small")
    vault_cli.ok("upload", "a.bin", "small.txt")
    files = [p for p in store_dir.rglob("*") if p.is_file() and p.name != "lock"]
    folders = [store_dir, *(p for p in store_dir.rglob("*") if p.is_dir())]
    assert any(p.parent.name == "keys" for p in files) and any("journal" in p.parts for p in files)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o600)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o700)}


@pytest.mark.parametrize("name", [BAD, TITLE])
def test_journal_records_are_valid_utf8_json(vault_cli: Cli, open_vault: Any, name: bytes) -> None:
    """What a journal holds is strict UTF-8 JSON, readable by any JSON parser."""
    from livedata_cli import journal

    _make(vault_cli.cwd / "t", name, b"z")
    vault_cli.ok("upload", "t", "--recursive")
    vault = open_vault()
    paths = []
    for key in vault.store.list(journal.PREFIX):
        for rec in journal.decode(vault.master_key, vault.vault_id, key, vault.store.get_bytes(key)):
            json.dumps(rec, ensure_ascii=False).encode("utf-8")  # strict: no lone surrogates
            paths.append(rec.get("path"))
    from livedata_cli.names import from_local, to_bytes

    expected = from_local("t/" + os.fsdecode(name))
    assert expected in paths and to_bytes(expected) == b"t/" + name


def test_a_record_that_cannot_be_utf8_is_refused_before_the_store(vault_cli: Cli, open_vault: Any) -> None:
    from livedata_cli import journal

    vault = open_vault()
    before = list(vault.store.list(journal.PREFIX))
    with pytest.raises(LivedataError, match="refusing to write"):  # journal.validate, before the store
        vault._write_journal([{"t": "rm", "path": "bad-\udcff", "time": 1.0}])
    assert list(vault.store.list(journal.PREFIX)) == before


def test_a_shared_file_with_an_odd_name_opens_under_its_own_bytes(vault_cli: Cli) -> None:
    _make(vault_cli.cwd / "t", BAD, b"shared bytes")
    vault_cli.ok("upload", "t", "--recursive")
    made = vault_cli.ok("share", os.fsdecode(b"t/" + BAD), "--out", "s.ldshare", "--json").json()
    out = vault_cli.cwd / "got"
    out.mkdir()
    r = vault_cli("download", f"s.ldshare#{made['key']}", "-o", str(out))
    assert r.code == 0, r.stderr
    _terminal_safe(r.stderr.encode())
    assert _names(out) == [BAD]


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
@example(raw="x\ufdd0ff\ufdd0".encode() + b"\xff\x1b]0;t\x07")
def test_the_vault_form_of_a_name_is_exact_unicode_and_shown_safely(raw: bytes) -> None:
    """Any bytes (and any text, U+FDD0 included) map to strict Unicode and back exactly."""
    from livedata_cli import names

    local = os.fsdecode(raw)
    vault = names.from_local(local)
    vault.encode("utf-8")  # strict: fits a journal, the index and JSON
    assert names.to_bytes(vault) == raw
    assert names.to_local(vault) == local
    assert names.from_argument(local) == vault or "\ufdd0" in local  # typed names find the same path
    assert names.from_argument(vault) == vault  # a vault path passes through unchanged
    shown = names.shown(vault)
    assert not [c for c in shown if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    names.for_json(vault).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(raws=st.lists(st.binary(max_size=24) | st.text(max_size=12).map(str.encode), max_size=40), block=st.integers(1, 8))
def test_a_listing_in_blocks_shows_each_name_as_one_safe_line(raws: list[bytes], block: int) -> None:
    """``ls`` writes names in blocks: the same text as one ``shown`` line per name."""
    from livedata_cli import names

    vault = [names.from_local(os.fsdecode(raw)) for raw in raws]
    text = "".join(names.shown_lines(vault, block))
    assert text == "".join(names.shown(v) + "\n" for v in vault)
    assert text.count("\n") == len(vault)


def test_a_literal_mark_in_a_name_does_not_collide_with_an_escaped_byte() -> None:
    from livedata_cli import names

    literal = "a\ufdd0ff"  # a valid UTF-8 name that looks like an escape
    escaped = os.fsdecode(b"a\xff")
    assert names.from_local(literal) != names.from_local(escaped)
    assert names.to_bytes(names.from_local(literal)) == literal.encode()
