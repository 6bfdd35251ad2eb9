"""prune compacts a chain's many audit objects into few, and the trail still verifies.

After compaction ``audit verify`` passes on this home and on a fresh home
attached to the same store, every event is listed once, and a dropped, edited
or rolled-back object (compacted or written after) is still caught.  A
``kill -9`` at each step of the compaction leaves a trail that verifies.

The killed and paused commands are real processes (``paused.py``); the others,
this home's, a fresh home's and a second writer's, run in the test's process.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
import store_kinds
from hypothesis import given
from hypothesis import strategies as st
from paused import kill_at
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

COMPACT = {"LIVEDATA_AUDIT_COMPACT_AFTER": "3"}
STAGES = ("audit-compacted", "audit-compact-deleting")


def _objects(kv: KindVault) -> dict[str, list[str]]:
    """The store's audit objects by chain, as a reader lists them."""
    out: dict[str, list[str]] = {}
    with kv.raw() as store:
        for name in store.list("audit/"):
            parts = name.split("/")
            if len(parts) == 3:
                out.setdefault(parts[1], []).append(name)
            elif len(parts) == 2:
                out.setdefault(parts[1], []).extend(store.list(name + "/"))
    return {c: sorted(n) for c, n in out.items()}


def _commands(cli: Cli, n: int, stem: str = "f") -> None:
    """``n`` commands that each leave events (one audit object each)."""
    for i in range(n):
        write(cli.cwd / f"{stem}{i}.txt", f"{stem} {i}\n")
        cli.ok("upload", f"{stem}{i}.txt")


def _listed(cli: Cli) -> list[tuple[str, int]]:
    rows = cli.ok("audit", "--json").json()
    keys = [(r["chain"], r["seq"]) for r in rows if r["source"] == "local" and r["seq"] is not None]
    assert len(keys) == len(set(keys)), "an event is listed twice"
    return sorted(keys)


def _intact(cli: Cli) -> dict[str, Any]:
    report: dict[str, Any] = cli.ok("audit", "verify", "--json").json()
    assert report["intact"], report["problems"]
    return report


def _fresh(kv: KindVault) -> Cli:
    return kv.other_machine()


def _tampered(cli: Cli, *needles: str) -> None:
    r = cli("audit", "verify")
    assert_one_line_error(r, 5)
    for needle in needles:
        assert needle in r.stderr, r.stderr


# -- the plan of ranges ------------------------------------------------------------------
@given(newest=st.integers(min_value=1, max_value=10**7), size=st.integers(min_value=1, max_value=10**6))
def test_chunks_cover_every_event_once_aligned(newest: int, size: int) -> None:
    from livedata_cli.audit.compaction import chunks

    if newest // size > 2000:
        newest = size * 2000 + newest % size or 1
    ranges = chunks(newest, size)
    assert ranges[0][0] == 1 and ranges[-1][1] == newest
    for (_lo, hi), (nlo, _nhi) in itertools.pairwise(ranges):
        assert nlo == hi + 1
    for lo, hi in ranges:
        assert (lo - 1) % size == 0 and 1 <= hi - lo + 1 <= size


@given(raw=st.text(max_size=12))
def test_threshold_setting_is_a_positive_whole_number_or_usage_error(raw: str) -> None:
    import os

    from livedata_cli.audit import compaction
    from livedata_cli.errors import UsageError

    saved = os.environ.get(compaction.ENV)
    try:
        if "\x00" in raw:
            return
        os.environ[compaction.ENV] = raw
        try:
            value = compaction.threshold()
        except UsageError as e:
            assert compaction.ENV in e.message
            return
        assert value >= 1
        assert value == (int(raw) if raw.strip() else compaction.COMPACT_AFTER)
    finally:
        if saved is None:
            os.environ.pop(compaction.ENV, None)
        else:
            os.environ[compaction.ENV] = saved


# -- every store kind -------------------------------------------------------------------------
def test_prune_compacts_the_audit_objects_and_the_trail_still_verifies(kind_vault: KindVault) -> None:
    kv = kind_vault
    cli = kv.cli
    _commands(cli, 5)
    (chain,) = _objects(kv)
    before_objects = _objects(kv)[chain]
    assert len(before_objects) >= 6
    before = _listed(cli)
    cli.ok("prune", env=COMPACT)
    after_objects = _objects(kv)[chain]
    # One compacted object for everything before the prune, and the prune's own events.
    assert len(after_objects) == 2, after_objects
    compacted = after_objects[0]
    assert compacted.endswith(f"000000000001-{int(before_objects[-1].rsplit('-', 1)[1]):012d}")
    report = _intact(cli)
    assert report["events"] >= len(before)
    assert set(before) <= set(_listed(cli))
    # A fresh machine reads the compacted chain from the store alone.
    fresh = _fresh(kv)
    assert set(before) <= set(_listed(fresh))
    _intact(fresh)
    # A second prune (threshold not reached) changes nothing but adds its own object.
    cli.ok("prune", env=COMPACT)
    assert _objects(kv)[chain][0] == compacted
    _intact(cli)
    # The compacted object edited: caught here and on the fresh machine.
    with kv.raw() as store:
        blob = bytearray(store.get_bytes(compacted))
        blob[len(blob) // 2] ^= 1
        store.put_bytes(compacted, bytes(blob))
    _tampered(cli, "fails authentication")
    _tampered(fresh, "fails authentication")


@pytest.mark.parametrize("stage", ["audit-compacted"])
def test_prune_killed_during_audit_compaction_on_every_store(kind_vault: KindVault, stage: str) -> None:
    kv = kind_vault
    cli = kv.cli
    _commands(cli, 4)
    before = _listed(cli)
    (chain,) = _objects(kv)
    n = len(_objects(kv)[chain])
    kill_at(cli, ["prune"], stage, env=COMPACT)
    assert len(_objects(kv)[chain]) == n + 1  # the compacted object, and every old one
    assert _listed(cli) == before
    _intact(cli)
    fresh = _fresh(kv)
    assert set(before) <= set(_listed(fresh))
    _intact(fresh)
    cli.ok("prune", env=COMPACT)
    assert len(_objects(kv)[chain]) == 2
    _intact(cli)
    _intact(fresh)


# -- the folder store: each kill stage, each kind of tampering ----------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_prune_killed_at_each_audit_compaction_stage(cli: Cli, store_dir: Path, stage: str) -> None:
    cli.ok("init")
    _commands(cli, 5)
    before = _listed(cli)
    chain = _chain_dir(store_dir)
    n = len(list(chain.iterdir()))
    kill_at(cli, ["prune"], stage, env=COMPACT)
    left = sorted(p.name for p in chain.iterdir())
    if stage == "audit-compacted":
        assert len(left) == n + 1
    else:
        assert 2 <= len(left) < n + 1
    assert _listed(cli) == before
    _intact(cli)
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(store_dir.parent.parent / "fresh")}, cli.cwd, inprocess=cli.inprocess)
    fresh.ok("init", "--store", str(store_dir))
    assert set(before) <= set(_listed(fresh))
    _intact(fresh)
    cli.ok("prune", env=COMPACT)
    assert len(list(chain.iterdir())) == 2  # the compacted object and the prune's own
    _intact(cli)
    assert set(_listed(cli)) == set(_listed(fresh))
    _intact(fresh)


def _chain_dir(store_dir: Path) -> Path:
    (chain,) = (store_dir / "audit").iterdir()
    return chain


def _compacted_then_more(cli: Cli, store_dir: Path) -> tuple[Path, Cli]:
    """A compacted chain, a fresh machine that has read it, then three more commands."""
    cli.ok("init")
    _commands(cli, 4)
    cli.ok("prune", env=COMPACT)
    chain = _chain_dir(store_dir)
    assert len(list(chain.iterdir())) == 2  # compacted, and the prune's own events
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(store_dir.parent.parent / "fresh")}, cli.cwd, inprocess=cli.inprocess)
    fresh.ok("init", "--store", str(store_dir))
    _commands(cli, 3, stem="later")
    _intact(fresh)
    _intact(cli)
    return chain, fresh


def test_dropped_object_after_compaction_is_caught(cli: Cli, store_dir: Path) -> None:
    chain, fresh = _compacted_then_more(cli, store_dir)
    names = sorted(p.name for p in chain.iterdir())
    (chain / names[-2]).unlink()  # one of the later commands' objects
    _tampered(cli, "sequence check")
    _tampered(fresh, "sequence check")
    newcomer = Cli({**cli.env, "LIVEDATA_HOME": str(store_dir.parent.parent / "newcomer")}, cli.cwd, inprocess=cli.inprocess)
    newcomer.ok("init", "--store", str(store_dir))
    _tampered(newcomer, "sequence check")


def test_edited_object_after_compaction_is_caught(cli: Cli, store_dir: Path) -> None:
    chain, fresh = _compacted_then_more(cli, store_dir)
    last = sorted(chain.iterdir())[-1]
    blob = bytearray(last.read_bytes())
    blob[-5] ^= 1
    last.write_bytes(bytes(blob))
    _tampered(cli, "fails authentication")
    _tampered(fresh, "fails authentication")


def test_rolled_back_objects_after_compaction_are_caught(cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    cli.ok("init")
    _commands(cli, 4)
    cli.ok("prune", env=COMPACT)
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "fresh")}, cli.cwd, inprocess=cli.inprocess)
    fresh.ok("init", "--store", str(store_dir))
    saved = tmp_path / "saved"
    shutil.copytree(store_dir / "audit", saved / "audit")
    shutil.copytree(store_dir / "audit-head", saved / "audit-head")
    _commands(cli, 3, stem="later")
    _intact(fresh)  # the fresh machine has read the later events too
    # The store rolls its audit objects and head records back to the saved copy.
    shutil.rmtree(store_dir / "audit")
    shutil.rmtree(store_dir / "audit-head")
    shutil.copytree(saved / "audit", store_dir / "audit")
    shutil.copytree(saved / "audit-head", store_dir / "audit-head")
    _tampered(cli, "truncated")
    _tampered(fresh, "truncated")


def test_a_tampered_chain_is_left_uncompacted(cli: Cli, store_dir: Path) -> None:
    cli.ok("init")
    _commands(cli, 5)
    chain = _chain_dir(store_dir)
    names = sorted(p.name for p in chain.iterdir())
    (chain / names[2]).unlink()  # the store drops an object in the middle
    _tampered(cli, "sequence check")
    r = cli.ok("prune", env=COMPACT)
    assert "left uncompacted" in r.stderr
    left = sorted(p.name for p in chain.iterdir())
    assert set(names) - {names[2]} <= set(left)  # nothing merged, nothing deleted
    _tampered(cli, "sequence check")  # compaction did not launder the gap


def test_bad_threshold_is_a_usage_error_before_anything_is_done(cli: Cli, store_dir: Path) -> None:
    cli.ok("init")
    _commands(cli, 4)
    chain = _chain_dir(store_dir)
    names = sorted(p.name for p in chain.iterdir())
    r = cli("prune", env={"LIVEDATA_AUDIT_COMPACT_AFTER": "many"})
    assert_one_line_error(r, 2)
    assert "LIVEDATA_AUDIT_COMPACT_AFTER" in r.stderr
    assert r.stdout == b""
    assert set(names) <= {p.name for p in chain.iterdir()}


def test_below_the_threshold_nothing_is_compacted(cli: Cli, store_dir: Path) -> None:
    cli.ok("init")
    _commands(cli, 3)
    chain = _chain_dir(store_dir)
    names = sorted(p.name for p in chain.iterdir())
    cli.ok("prune")  # default threshold: far above four objects
    assert set(names) <= {p.name for p in chain.iterdir()}


# -- journal writers against a compacting prune ------------------------------------------------
JOURNAL_WRITERS = {
    "tag": (["tag", "a.txt", "kept"], lambda cli: "kept" in cli.ok("info", "a.txt", "--json").json()["tags"]),
    "note": (["note", "a.txt", "a kept note"],
             lambda cli: cli.ok("note", "a.txt").out.strip() == "a kept note"),
    "rm": (["rm", "b.txt"], lambda cli: cli("download", "b.txt", "-o", "-").code == 3),
    "restore": (["restore", "c.txt"], lambda cli: cli.ok("download", "c.txt", "-o", "-").stdout == b"c\n"),
    "share": (["share", "a.txt", "-o", "a.ldshare"],
              lambda cli: [s["path"] for s in cli.ok("share", "ls", "--json").json()["shares"]] == ["a.txt"]),
}


@pytest.mark.parametrize("stage", ["journal", "journaled"])
@pytest.mark.parametrize("writer", sorted(JOURNAL_WRITERS))
@pytest.mark.parametrize("where", ["same-home", "other-home"])
def test_a_journal_written_during_a_compacting_prune_is_kept(
    cli: Cli, store_dir: Path, tmp_path: Path, stage: str, writer: str, where: str
) -> None:
    from paused import run_against_paused

    cli.ok("init")
    write(cli.cwd / "a.txt", "a\n")
    write(cli.cwd / "b.txt", "b\n")
    write(cli.cwd / "c.txt", "c\n")
    cli.ok("upload", "a.txt", "b.txt", "c.txt")
    cli.ok("rm", "c.txt")
    other = cli
    if where == "other-home":
        other = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "other")}, cli.cwd, inprocess=cli.inprocess)
        other.ok("init", "--store", str(store_dir))
    args, done = JOURNAL_WRITERS[writer]
    pruner = Cli({**cli.env, "LIVEDATA_COMPACT_AFTER": "1"}, cli.cwd, inprocess=cli.inprocess)
    (code1, _o1, err1), (code2, _o2, err2) = run_against_paused(other, args, stage, pruner, ["prune"], tmp_path)
    assert code1 == 0, err1
    assert code2 == 0, err2
    for home in (cli, other):
        home.ok("sync")
        assert done(home), f"{writer} lost on {home.env['LIVEDATA_HOME']}"
        home.ok("verify")
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "fresh")}, cli.cwd, inprocess=cli.inprocess)
    fresh.ok("init", "--store", str(store_dir))
    assert done(fresh), f"{writer} lost on a fresh home"
    fresh.ok("verify")


@pytest.mark.parametrize("stage", ["journal", "journaled"])
def test_a_tag_written_during_keys_rotate_is_kept(cli: Cli, store_dir: Path, tmp_path: Path, stage: str) -> None:
    """keys rotate compacts the journals too: a tag of another machine meanwhile is kept."""
    from paused import run_against_paused

    cli.ok("init")
    write(cli.cwd / "a.txt", "a\n")
    cli.ok("upload", "a.txt")
    other = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "other")}, cli.cwd, inprocess=cli.inprocess)
    other.ok("init", "--store", str(store_dir))
    args, done = JOURNAL_WRITERS["tag"]
    (code1, _o1, err1), (code2, _o2, err2) = run_against_paused(other, args, stage, cli, ["keys", "rotate"], tmp_path)
    assert code2 == 0, err2
    if code1 != 0:  # refused, with the documented message, never half-done
        assert "Traceback" not in err1
        other.ok(*args)
    for home in (cli, other):
        home.ok("sync")
        assert done(home), f"tag lost on {home.env['LIVEDATA_HOME']}"
        home.ok("verify")
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "fresh")}, cli.cwd, inprocess=cli.inprocess)
    fresh.ok("init", "--store", str(store_dir))
    assert done(fresh), "tag lost on a fresh home"
