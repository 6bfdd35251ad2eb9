"""Small files share pack objects on a folder store: fewer store objects, the
same guarantees (each member authenticated on its own, a damaged member
fails alone, a pack goes when its last member does)."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error, data_objects, write
from livedata_cli.packs import padded

pytestmark = pytest.mark.inprocess


def _small_tree(root: Path, n: int = 40) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i:03d}.bin": os.urandom(100 + 37 * i) for i in range(n)}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def _entries(cli: Cli) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in cli.ok("ls", "--json").json()}


def test_small_files_go_into_one_pack_and_come_back(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    files = _small_tree(vault_cli.cwd / "src")
    big = os.urandom(2 * 1024 * 1024 + 3)
    write(vault_cli.cwd / "src" / "big.bin", big)
    vault_cli.ok("upload", "src", "-r", "--as", "t/")
    entries = _entries(vault_cli)
    packs = {e["pack"] for p, e in entries.items() if p != "t/big.bin"}
    assert len(packs) == 1 and None not in packs, "the 40 small files share one pack"
    assert entries["t/big.bin"]["pack"] is None, "a file over one segment is an object of its own"
    assert len(data_objects(store_dir)) == 2
    spans = sorted((e["offset"], e["offset"] + e["length"]) for p, e in entries.items() if p != "t/big.bin")
    # Members lie one after the other, each followed by random bytes up to its Padmé size.
    assert all(b[0] == a[0] + padded(a[1] - a[0]) for a, b in itertools.pairwise(spans)), "members in order, padded"
    assert len({e["object"] for e in entries.values()}) == len(entries), "each member keeps its own id and key"
    vault_cli.ok("verify", "--data")
    vault_cli.ok("download", "t/", "-o", "out")
    for rel, data in files.items():
        assert (vault_cli.cwd / "out" / rel).read_bytes() == data
    assert (vault_cli.cwd / "out" / "big.bin").read_bytes() == big
    # Another machine attaching to the store reads the packed files the same way.
    other = {"LIVEDATA_HOME": str(tmp_path / "other-home")}
    vault_cli.ok("init", "--store", str(store_dir), env=other)
    assert vault_cli.ok("download", "t/d1/f001.bin", "-o", "-", env=other).stdout == files["d1/f001.bin"]


def test_a_damaged_member_fails_alone(vault_cli: Cli, store_dir: Path) -> None:
    files = _small_tree(vault_cli.cwd / "src", 9)
    vault_cli.ok("upload", "src", "-r", "--as", "t/")
    victim = _entries(vault_cli)["t/d1/f005.bin"]
    pack = next(p for p in data_objects(store_dir) if p.name == victim["pack"])
    data = bytearray(pack.read_bytes())
    data[victim["offset"] + victim["length"] // 2] ^= 0x40
    pack.write_bytes(bytes(data))
    r = vault_cli("download", "t/", "-o", "out", "--json")
    assert r.code == 8
    failed = [(i["source"], i["exit_code"]) for i in r.json()["items"] if i["status"] == "failed"]
    assert failed == [("t/d1/f005.bin", 5)]
    for rel, content in files.items():
        if rel != "d1/f005.bin":
            assert (vault_cli.cwd / "out" / rel).read_bytes() == content
    r = vault_cli("verify", "--data", "--json")
    assert r.code == 5
    assert [p["path"] for p in r.json()["problems"]] == ["t/d1/f005.bin"]
    vault_cli.ok("verify")  # headers alone: the damage is in the payload


def test_a_truncated_pack_is_caught_by_verify(vault_cli: Cli, store_dir: Path) -> None:
    _small_tree(vault_cli.cwd / "src", 6)
    vault_cli.ok("upload", "src", "-r", "--as", "t/")
    entries = _entries(vault_cli)
    last = max(entries.values(), key=lambda e: e["offset"])
    pack = next(p for p in data_objects(store_dir) if p.name == last["pack"])
    pack.write_bytes(pack.read_bytes()[: last["offset"] + last["length"] - 1])  # into the member, past its padding
    r = vault_cli("verify", "--json")
    assert r.code == 5
    assert [p["path"] for p in r.json()["problems"]] == [last["path"]]
    assert_one_line_error(vault_cli("download", last["path"], "-o", "x.bin"), 5)
    assert not (vault_cli.cwd / "x.bin").exists()


def test_a_record_pointed_at_another_member_does_not_open(vault_cli: Cli) -> None:
    """The record's header hash binds it to its own container, wherever the offset points."""
    _small_tree(vault_cli.cwd / "src", 3)
    vault_cli.ok("upload", "src", "-r", "--as", "t/")
    a, b = sorted(_entries(vault_cli).values(), key=lambda e: e["offset"])[:2]
    index = sqlite3.connect(Path(vault_cli.env["LIVEDATA_HOME"]) / "index.sqlite")
    with index:
        index.execute('UPDATE versions SET "offset" = ?, length = ? WHERE vid = ?', (b["offset"], b["length"], a["id"]))
    index.close()
    r = vault_cli("download", a["path"], "-o", "a.bin")
    assert_one_line_error(r, 5)
    assert not (vault_cli.cwd / "a.bin").exists()


def test_a_pack_goes_with_its_last_member(vault_cli: Cli, store_dir: Path) -> None:
    files = _small_tree(vault_cli.cwd / "src", 4)
    vault_cli.ok("upload", "src", "-r", "--as", "t/")
    names = sorted(_entries(vault_cli))
    assert len(data_objects(store_dir)) == 1
    for path in names[:-1]:
        vault_cli.ok("rm", "--purge", path)
    assert len(data_objects(store_dir)) == 1, "one member is left: the pack stays"
    keep = names[-1]
    assert vault_cli.ok("download", keep, "-o", "-").stdout == files[keep.removeprefix("t/")]
    vault_cli.ok("rm", "--purge", keep)
    assert data_objects(store_dir) == []


def test_packs_are_sealed_at_their_size(vault_cli: Cli, store_dir: Path) -> None:
    """Members up to one segment each; a pack is closed once it passes 16 MiB."""
    for i in range(20):
        write(vault_cli.cwd / "src" / f"m{i:02d}.bin", os.urandom(1024 * 1024))  # exactly one segment
    vault_cli.ok("upload", "src", "-r", "--as", "m/")
    sizes = sorted(p.stat().st_size for p in data_objects(store_dir))
    assert len(sizes) == 2 and sum(sizes) == 20 * padded(1024 * 1024 + 102 + 16)
    assert max(sizes) <= 16 * 1024 * 1024 + padded(1024 * 1024 + 118)
    vault_cli.ok("verify", "--data")


def test_many_small_files_are_sealed_by_workers_and_deduplicated(vault_cli: Cli, store_dir: Path) -> None:
    """Over 256 small files go through the worker processes: duplicates within
    the run and of content already stored are still found, and every file
    comes back byte for byte."""
    known = os.urandom(3000)
    write(vault_cli.cwd / "old" / "known.bin", known)
    vault_cli.ok("upload", "old", "-r")
    twin = os.urandom(5000)
    files = {f"d{i % 7}/f{i:03d}.bin": os.urandom(64 + i) for i in range(300)}
    files |= {"x/twin-a.bin": twin, "x/twin-b.bin": twin, "x/known-again.bin": known, "x/empty.bin": b""}
    for rel, data in files.items():
        write(vault_cli.cwd / "src" / rel, data)
    r = vault_cli.ok("upload", "src", "-r", "--as", "t/", "--json").json()
    assert r["counts"]["new"] == len(files) + 8  # every file, and its 8 folders
    by_path = {i["path"]: i for i in r["items"]}
    assert by_path["t/x/known-again.bin"]["deduplicated"] is True
    assert [by_path[p]["deduplicated"] for p in ("t/x/twin-a.bin", "t/x/twin-b.bin")] == [False, True]
    entries = _entries(vault_cli)
    assert entries["t/x/known-again.bin"]["object"] == entries["old/known.bin"]["object"]
    assert entries["t/x/twin-b.bin"]["object"] == entries["t/x/twin-a.bin"]["object"]
    assert entries["t/d1/f001.bin"]["mime"] == "application/octet-stream"
    stored = {e["object"] for p, e in entries.items() if p.startswith("t/") and e["kind"] == "file"}
    assert len(stored - {entries["old/known.bin"]["object"]}) == len(files) - 2  # not the twin, not the known one
    vault_cli.ok("verify", "--data")
    vault_cli.ok("download", "t/", "-o", "out")
    for rel, data in files.items():
        assert (vault_cli.cwd / "out" / rel).read_bytes() == data
    # A rerun finds everything unchanged without reading a file.
    again = vault_cli.ok("upload", "src", "-r", "--as", "t/", "--json").json()
    assert again["counts"] == {"unchanged": len(files) + 8}


def test_a_tree_stored_every_night_under_a_new_prefix_points_at_the_first_copy(vault_cli: Cli, store_dir: Path) -> None:
    """Each hash matches once per earlier copy; every new copy is deduplicated
    against one stored object per content, and stores no new data."""
    files = {f"d{i % 3}/f{i:03d}.bin": os.urandom(100 + i) for i in range(270)}
    for rel, data in files.items():
        write(vault_cli.cwd / "src" / rel, data)
    vault_cli.ok("upload", "src", "-r", "--as", "night-1/")
    stored = len(data_objects(store_dir))
    for night in (2, 3, 4):
        r = vault_cli.ok("upload", "src", "-r", "--as", f"night-{night}/", "--json").json()
        assert sum(1 for i in r["items"] if i.get("deduplicated")) == len(files)
    assert len(data_objects(store_dir)) == stored
    entries = _entries(vault_cli)
    for rel in files:
        assert {entries[f"night-{n}/{rel}"]["object"] for n in (1, 2, 3, 4)} == {entries[f"night-1/{rel}"]["object"]}
    vault_cli.ok("download", "night-4/", "-o", "out")
    assert all((vault_cli.cwd / "out" / rel).read_bytes() == data for rel, data in files.items())


def _state(pid: int) -> str | None:
    """A process's state letter (Z: a zombie), or None when it is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry.name))
    return kids


def test_a_killed_upload_leaves_no_worker_holding_the_vault_lock(vault_cli: Cli) -> None:
    for i in range(4000):
        write(vault_cli.cwd / "src" / f"d{i % 20}" / f"f{i:04d}.bin", os.urandom(2048))
    p = vault_cli.popen("upload", "src", "-r", "--as", "t/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and p.poll() is None and len(workers) < 2:
        workers = _children(p.pid)
        time.sleep(0.005)
    assert len(workers) >= 2, "the upload had its worker processes running"
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_state(w) not in (None, "Z") for w in workers):
        time.sleep(0.02)
    assert [w for w in workers if _state(w) not in (None, "Z")] == [], "the workers died with the command"
    r = vault_cli("upload", "src", "-r", "--as", "t/", "--no-wait")
    assert r.code == 0, r.stderr  # not 7: nothing holds the lock
    vault_cli.ok("verify", "--data")
    assert len([e for e in vault_cli.ok("ls", "t/", "--json").json() if e["kind"] == "file"]) == 4000


def test_a_failed_pack_write_fails_the_next_seal_and_stores_nothing(tmp_path: Path) -> None:
    """Members are held in memory and written a mebibyte at a time: when that
    write fails, the members already answered for went with it, so the next
    seal must fail (no journal may name them) and no pack object is left."""
    import errno

    from livedata_cli.packs import PackWriter
    from livedata_cli.stores.local import LocalStore

    store = LocalStore(tmp_path / "store")
    store.prepare()

    class Full:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    real = store._create
    store._create = lambda tmp: Full(real(tmp))  # type: ignore[method-assign]
    writer = PackWriter(store)
    answered = []
    with pytest.raises(OSError) as first:
        for _ in range(100):
            answered.append(writer.add(os.urandom(64 * 1024)))
    assert first.value.errno == errno.ENOSPC and answered, "some members were answered before the write"
    with pytest.raises(OSError) as sealed:
        writer.seal()
    assert sealed.value.errno == errno.ENOSPC
    assert not list(store.list("data/")), "no pack object, empty or not"
    writer.seal()  # reported once: the writer is usable again


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.booleans(), st.sampled_from(["file", "file", "symlink"])),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_deduplication_finds_the_oldest_plain_file_of_each_content(rows: list[tuple[str, bool, str]]) -> None:
    """find_by_hashes answers for many hashes what find_by_hash answers for
    one: the oldest version holding that content that is a file and has no
    file password; none where there is no such version."""
    import tempfile

    from livedata_cli.index.core import Index

    with tempfile.TemporaryDirectory() as tmp:
        index = Index(Path(tmp) / "index.sqlite")
        records = [
            {
                "t": "put", "vid": f"{i:032x}", "path": f"d/f{i}", "object": f"{i:032x}", "length": 1, "size": 1,
                "mime": "", "hash": h, "header_hash": "0", "wrapped_key": "00", "key_id": "k",
                "created": 2000.0 - i * 7 % 41 - i / 100, "protected": protected, "kind": kind,
            }
            for i, (h, protected, kind) in enumerate(rows)
        ]  # fmt: skip
        index.apply("journal/1", records)
        found = index.find_by_hashes(list("abcde"))
        for h in "abcde":
            plain = [r for r in records if r["hash"] == h and not r["protected"] and r["kind"] == "file"]
            oldest = min(plain, key=lambda r: r["created"])["vid"] if plain else None
            assert (found[h].vid if h in found else None) == oldest
            single = index.find_by_hash(h)
            assert (single.vid if single else None) == oldest
        index.close()
