"""Commands that delete data racing uploads, on one home and on two homes
sharing a store, on every store kind.

The upload is a real ``livedata`` process stopped (SIGSTOP, through the
test-only ``LIVEDATA_TESTONLY_PAUSE_AT``) at a chosen stage: after it took its
locks, after its data is written and its records are decided (deduplicated
against what the vault already holds) but before its journal, and after its
journal.  The deleting command then runs, the upload is resumed (SIGCONT),
and whatever the upload reported as stored must download byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import store_kinds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paused import run_against_paused, start_paused
from store_kinds import KindVault

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

STAGES = ("locked", "journal", "journaled")


def _homes(kv: KindVault, two: bool) -> tuple[Cli, Cli]:
    return kv.cli, (kv.other_machine() if two else kv.cli)


def _index_was_busy(result: tuple[int, str, str], two_homes: bool) -> None:
    """One home: a writer stopped while a thread of it was inside an index
    transaction keeps the other command from the index (SQLite's 30 s busy
    timeout); that command fails cleanly (exit 7, one line), deletes nothing,
    and succeeds when run again."""
    code, _out, err = result
    assert not two_homes and code == 7 and "stayed busy" in err, result
    assert err.count("\n") == 1 and err.startswith("livedata: error:"), result


@store_kinds.every_stage_on_folder(STAGES, "journal")
@pytest.mark.parametrize("two_homes", [False, True], ids=["one-home", "two-homes"])
def test_purge_racing_a_deduplicating_upload(kind_vault: KindVault, stage: str, two_homes: bool, tmp_path: Path) -> None:
    """The upload stores b.bin by referring to a.bin's data; rm --purge a.bin
    runs meanwhile.  b.bin must survive whatever the upload reported.  Every stage
    on a folder store; on S3 and the API the upload paused before its journal,
    its data stored and referred to by nothing yet."""
    uploader, purger = _homes(kind_vault, two_homes)
    data = os.urandom(200_000)
    write(uploader.cwd / "a.bin", data)
    write(uploader.cwd / "b.bin", data)
    uploader.ok("upload", "a.bin")
    purger.ok("sync")
    up, rm = run_against_paused(uploader, ["upload", "b.bin"], stage, purger, ["rm", "--purge", "a.bin"], tmp_path)
    assert up[0] == 0, up
    if rm[0] != 0:
        _index_was_busy(rm, two_homes)
        purger.ok("rm", "--purge", "a.bin")
    for cli in {id(uploader): uploader, id(purger): purger}.values():
        assert cli.ok("download", "b.bin", "-o", "-").stdout == data
        cli.ok("verify", "--data")
    assert purger("download", "a.bin", "-o", "-").code == 3


@store_kinds.every_stage_on_folder(STAGES, "journal")
@pytest.mark.parametrize("two_homes", [False, True], ids=["one-home", "two-homes"])
def test_prune_racing_an_upload(kind_vault: KindVault, stage: str, two_homes: bool, tmp_path: Path) -> None:
    """A prune without policy deletes objects no record refers to: an upload's
    data before its journal is such an object, unless the prune waits.  Every stage
    on a folder store; on S3 and the API that stage, before the journal."""
    uploader, pruner = _homes(kind_vault, two_homes)
    data = os.urandom(300_000)
    small = os.urandom(3000)
    write(uploader.cwd / "new" / "big.bin", data)
    write(uploader.cwd / "new" / "small.bin", small)
    up, pr = run_against_paused(
        uploader, ["upload", "new", "--recursive"], stage, pruner, ["prune", "--json"], tmp_path
    )
    if pr[0] != 0:
        _index_was_busy(pr, two_homes)
        pruner.ok("prune")
    assert up[0] == 0, up
    for cli in {id(uploader): uploader, id(pruner): pruner}.values():
        assert cli.ok("download", "new/big.bin", "-o", "-").stdout == data
        assert cli.ok("download", "new/small.bin", "-o", "-").stdout == small
        cli.ok("verify", "--data")


@pytest.mark.parametrize("stage", ["locked", "journal"])
def test_policy_prune_racing_a_deduplicating_upload(kind_vault: KindVault, stage: str, tmp_path: Path) -> None:
    """prune --keep-last 1 forgets the old version whose content the upload is
    storing again under another name."""
    cli = kind_vault.cli
    other = kind_vault.other_machine()
    old = os.urandom(100_000)
    write(cli.cwd / "f.bin", old)
    cli.ok("upload", "f.bin")
    write(cli.cwd / "f.bin", os.urandom(100_000))
    cli.ok("upload", "f.bin")
    write(cli.cwd / "copy.bin", old)
    up, pr = run_against_paused(cli, ["upload", "copy.bin"], stage, other, ["prune", "--keep-last", "1"], tmp_path)
    assert pr[0] == 0 and up[0] == 0, (up, pr)
    assert other.ok("download", "copy.bin", "-o", "-").stdout == old
    other.ok("verify", "--data")


def test_prune_waits_for_a_writer_and_no_wait_refuses(kind_vault: KindVault, tmp_path: Path) -> None:
    """While an upload holds its shared lock in the store, prune --no-wait
    exits 7 naming the holder; a second upload does not wait for it."""
    cli = kind_vault.cli
    other = kind_vault.other_machine()
    write(cli.cwd / "x.bin", os.urandom(5000))
    write(other.cwd / "y.bin", os.urandom(5000))
    p = start_paused(cli, ["upload", "x.bin"], "journal")
    try:
        r = other("prune", "--no-wait")
        assert r.code == 7, r
        assert "the vault is locked by" in r.stderr and "--no-wait" in r.stderr
        if kind_vault.kind != "folder":  # a folder store's machine lock keeps one writer at a time
            assert "upload (shared lock" in r.stderr
            other.ok("upload", "y.bin")  # writers share the store lock
    finally:
        os.kill(p.pid, signal.SIGCONT)
        p.wait(timeout=60)
    assert p.returncode == 0
    if kind_vault.kind == "folder":
        other.ok("upload", "y.bin")
    other.ok("prune")
    assert other.ok("ls").out.split() == ["x.bin", "y.bin"]
    assert kind_vault.keys("locks/") == []


def test_stale_lock_of_a_dead_process_is_taken_over(kind_vault: KindVault) -> None:
    """kill -9 leaves a lock object; the next prune sees its holder is dead."""
    cli = kind_vault.cli
    write(cli.cwd / "x.bin", os.urandom(5000))
    p = start_paused(cli, ["upload", "x.bin"], "journal")
    assert len(kind_vault.keys("locks/")) == 1
    p.kill()
    p.wait()
    r = cli.ok("prune", "--no-wait", "--json")
    assert r.json()["reclaimed"]["unreferenced"]["objects"] >= 1  # the killed upload's data
    assert kind_vault.keys("locks/") == []


def test_a_writer_whose_lock_was_cleared_writes_no_journal(kind_vault: KindVault, tmp_path: Path) -> None:
    """A writer paused longer than the stale time loses its lock to a prune; on
    waking it stops before its journal, with exit 7, and claims nothing."""
    if kind_vault.kind == "folder":
        pytest.skip("homes on one machine share a folder store's flock, which the paused writer holds")
    cli = kind_vault.cli
    other = kind_vault.other_machine()
    write(cli.cwd / "x.bin", os.urandom(50_000))
    err = tmp_path / "err"
    with open(err, "wb") as e:
        p = start_paused(cli, ["upload", "x.bin"], "journal", env={"LIVEDATA_LOCK_STALE_AFTER": "3"}, stderr=e)
    # On another "machine" (so the pid check does not apply) the lock goes stale by its age.
    with kind_vault.raw() as store:
        key = next(iter(store.list("locks/")))
        body = store.get_bytes(key).replace(b'"host":"', b'"host":"x')
        store.put_bytes(key, body)
    time.sleep(3.2)
    r = other("prune", "--json", env={"LIVEDATA_LOCK_STALE_AFTER": "3"})
    assert r.code == 0, r.stderr
    os.kill(p.pid, signal.SIGCONT)
    p.wait(timeout=60)
    assert p.returncode == 7, err.read_text()
    assert "cleared as stale" in err.read_text()
    assert other.ok("ls").out.split() == []
    other.ok("verify", "--data")


# -- lock objects are store input: anything may be there ------------------------------
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=9),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode()))
@settings(max_examples=300, deadline=None)
def test_any_lock_object_is_parsed_or_refused(blob: bytes) -> None:
    from livedata_cli import locking

    info = locking.parse_lock(blob)
    if info is not None:
        assert isinstance(info["exclusive"], bool) and isinstance(info["pid"], int)
        assert isinstance(info["refreshed"], float)


@given(st.fixed_dictionaries({
    "v": st.integers(), "exclusive": st.booleans(), "command": st.text(max_size=60), "host": st.text(max_size=20),
    "boot": st.text(max_size=20), "pid": st.integers(), "start": st.text(max_size=10),
    "created": st.floats() | st.integers(), "refreshed": st.floats() | st.integers(),
}))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_planted_lock_is_judged_without_error(tmp_path: Path, fields: dict[str, object]) -> None:
    """A well-formed but hostile lock: described and judged stale or live, no exception."""
    from livedata_cli import locking
    from livedata_cli.stores.local import LocalStore

    (tmp_path / "store").mkdir(exist_ok=True)  # a store folder exists before it is used (only init makes one)
    store = LocalStore(tmp_path / "store")
    blob = json.dumps(fields).encode()
    store.put_bytes("locks/0-planted", blob)
    lock = locking.StoreLock(store, exclusive=True, command="prune", notice=lambda _m: None)
    info = locking.parse_lock(blob)
    if info is not None:
        lock._describe(info)
    conflicts = lock._conflicts()
    assert len(conflicts) <= 1
    store.delete("locks/0-planted")


def test_a_planted_unreadable_lock_holds_prune_back_until_stale(kind_vault: KindVault) -> None:
    """Garbage in locks/: prune --no-wait refuses with one line (exit 7), and
    once the object has sat unchanged for the stale time it is cleared."""
    cli = kind_vault.cli
    with kind_vault.raw() as store:
        store.put_bytes("locks/00000000000000000001-planted", b"\xff not a lock")
    assert_one_line_error(cli("prune", "--no-wait"), 7)
    r = cli("prune", env={"LIVEDATA_LOCK_STALE_AFTER": "3"})
    assert r.code == 0, r.stderr
    assert kind_vault.keys("locks/") == []
