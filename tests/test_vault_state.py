"""Authenticated vault state on every store kind: a hostile store edits the
config, plants a KMS slot, drops, rolls back or replays journals; each is
caught with its documented exit code.  Also: replay of damaged journals and
bad records, and stable version numbers."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import store_kinds
from store_kinds import KindVault

from conftest import PASSPHRASE, Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3


def _journals(kv: KindVault) -> list[str]:
    return kv.keys("journal/")


def _config(kv: KindVault) -> dict[str, Any]:
    with kv.raw() as store:
        data: dict[str, Any] = json.loads(store.get_bytes("config"))
        return data


def _put_config(kv: KindVault, data: dict[str, Any]) -> None:
    with kv.raw() as store:
        store.put_bytes("config", json.dumps(data, indent=1).encode())


def _master(kv: KindVault) -> bytes:
    """The vault key, as the owner has it (to play a store that replays what it saw)."""
    from livedata_cli.keys.slots import StoreConfig
    from livedata_cli.keys.unlock import open_with_secret

    with kv.raw() as store:
        master, _slot = open_with_secret(store, StoreConfig.read(store), PASSPHRASE)
        return master


def _config_mac(master: bytes, vault_id: str, data: dict[str, Any]) -> str:
    """The config MAC as docs/state-model.md defines it (written from the docs)."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(hashes.SHA256(), 32, vault_id.encode(), b"livedata/v1/config-mac").derive(master)
    body = json.dumps({k: v for k, v in data.items() if k != "mac" and v is not None}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _three_journals(kv: KindVault) -> list[str]:
    cli = kv.cli
    write(cli.cwd / "a.txt", "first\n")
    write(cli.cwd / "b.txt", "second\n")
    cli.ok("upload", "a.txt")
    cli.ok("upload", "b.txt")
    cli.ok("note", "a.txt", "a note that a store may want to hide")
    names = _journals(kv)
    assert len(names) == 3
    return names


# -- 1. the config: MAC and pins ---------------------------------------------------
def test_new_config_carries_a_mac_and_the_home_pins_it(kind_vault: KindVault) -> None:
    data = _config(kind_vault)
    assert isinstance(data["mac"], str) and len(data["mac"]) == 64
    pins = json.loads((kind_vault.home / "state.json").read_text())
    assert (pins["vault_id"], pins["key_id"], pins["kms_key_id"]) == (data["vault_id"], data["key_id"], None)
    assert oct((kind_vault.home / "state.json").stat().st_mode & 0o777) == "0o600"


def test_edited_config_field_is_exit_5(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "f.txt", "x\n")
    data = _config(kind_vault)
    data["kms_per_object"] = True  # the MAC no longer covers what is there
    _put_config(kind_vault, data)
    r = cli("upload", "f.txt")
    assert_one_line_error(r, 5)
    assert "MAC" in r.stderr
    assert _journals(kind_vault) == []


def test_swapped_config_of_another_vault_is_exit_5_naming_the_key(kind_vault: KindVault, tmp_path: Any) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "f.txt", "x\n")
    cli.ok("upload", "f.txt")
    ours = _config(kind_vault)
    other = Cli({**cli.env, "LIVEDATA_HOME": str(tmp_path / "other-home")}, cli.cwd)
    other.ok("init")
    theirs = json.loads((tmp_path / "other-home" / "store" / "config").read_bytes())
    theirs["vault_id"] = ours["vault_id"]  # everything else of the other vault
    _put_config(kind_vault, theirs)
    r = cli("download", "f.txt", "-o", "-")
    assert_one_line_error(r, 5)
    assert "key id" in r.stderr and r.stdout == b""


def test_stripped_mac_is_exit_5(kind_vault: KindVault) -> None:
    data = _config(kind_vault)
    del data["mac"]
    _put_config(kind_vault, data)
    write(kind_vault.cli.cwd / "f.txt", "x\n")
    r = kind_vault.cli("upload", "f.txt")
    assert_one_line_error(r, 5)
    assert "lost its MAC" in r.stderr


def test_planted_kms_slot_does_not_unlock_the_vault(kind_vault: KindVault, moto_url: str) -> None:
    """A store writer adds a KMS slot of their own and points the config at it:
    the vault must not open through their key (new uploads would be theirs)."""
    from s3server import aws_env

    from livedata_cli.crypto.wrap import key_id
    from livedata_cli.keys import slots

    cli = kind_vault.cli
    aws_env(cli, moto_url) if kind_vault.kind != "s3" else None
    write(cli.cwd / "before.txt", "old\n")
    cli.ok("upload", "before.txt")
    data = _config(kind_vault)
    vault_id = data["vault_id"]
    attacker_master = os.urandom(32)
    with kind_vault.raw(cli) as store:
        from livedata_cli import aws

        attacker_key = aws.client("kms").create_key(Description="not yours")["KeyMetadata"]["Arn"]
        slot = slots.make_kms_slot(vault_id, attacker_master, attacker_key)
        store.put_bytes(slot.key, slot.to_bytes())
    data.update(kms_key_id=attacker_key, key_id=key_id(attacker_master, vault_id))
    data["mac"] = _config_mac(attacker_master, vault_id, data)  # the attacker can MAC under their own key
    _put_config(kind_vault, data)
    n_journals = len(_journals(kind_vault))
    write(cli.cwd / "secret.txt", "for the owner only\n")
    r = cli("upload", "secret.txt")
    assert_one_line_error(r, 5)
    assert "KMS key" in r.stderr and attacker_key in r.stderr
    assert len(_journals(kind_vault)) == n_journals  # nothing written under the attacker's key
    assert_one_line_error(cli("download", "before.txt", "-o", "-"), 5)


def test_legacy_vault_gets_a_mac_on_its_next_write(kind_vault: KindVault) -> None:
    """A vault made before config MACs: its home (no pins yet) pins on first use,
    the next unlocked write adds the MAC, and from then on a stripped MAC is exit 5."""
    data = _config(kind_vault)
    del data["mac"]
    _put_config(kind_vault, data)
    (kind_vault.home / "state.json").unlink()
    cli = kind_vault.cli
    write(cli.cwd / "f.txt", "x\n")
    cli.ok("upload", "f.txt")
    assert "mac" in _config(kind_vault)
    assert json.loads((kind_vault.home / "state.json").read_text())["config_mac"] is True
    _put_config(kind_vault, data)  # the old config again, without its MAC
    assert_one_line_error(cli("download", "f.txt", "-o", "-"), 5)


# -- 2. the journal chain ------------------------------------------------------------
def test_an_upload_journals_every_flush_but_a_short_tail_joins_the_last(
    kind_vault: KindVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal every ``FLUSH_RECORDS`` records keeps a killed backup's progress;
    a tail of under half that many joins the journal before it, rather than
    costing a journal of its own (its lock checks and requests)."""
    from livedata_cli.vault import upload

    monkeypatch.setattr(upload, "FLUSH_RECORDS", 40)
    cli = kind_vault.cli
    for i in range(50):  # 51 records with the folder: one journal
        write(cli.cwd / "few" / f"f{i:02d}.txt", f"few {i}\n")
    for i in range(120):  # 121 records: 40, 40 and the 41 left
        write(cli.cwd / "many" / f"f{i:03d}.txt", f"many {i}\n")
    before = len(_journals(kind_vault))
    cli.ok("upload", "few", "-r")
    assert len(_journals(kind_vault)) == before + 1
    cli.ok("upload", "many", "-r")
    assert len(_journals(kind_vault)) == before + 4
    assert len(cli.ok("ls", "--json").json()) == 170
    cli.ok("verify")


def test_dropped_journal_is_exit_5_on_sync_rebuild_verify_and_a_new_machine(kind_vault: KindVault) -> None:
    names = _three_journals(kind_vault)
    cli = kind_vault.cli
    with kind_vault.raw() as store:
        store.delete(names[1])  # the upload of b.txt
    for args in (("sync",), ("verify",), ("sync", "--rebuild"), ("upload", "a.txt")):
        r = cli(*args)
        assert_one_line_error(r, 5)
        assert "the store lost or rolled back journal" in r.stderr, (args, r.stderr)
    other = kind_vault.other_machine(attach=False)
    r = other("init", "--store", kind_vault.url)
    assert_one_line_error(r, 5)
    assert "the store lost or rolled back journal number 2" in r.stderr


def test_dropped_note_journal_is_noticed(kind_vault: KindVault) -> None:
    names = _three_journals(kind_vault)
    with kind_vault.raw() as store:
        store.delete(names[2])  # the note: the newest journal
    r = kind_vault.cli("sync")
    assert_one_line_error(r, 5)
    assert names[2] in r.stderr
    r = kind_vault.cli("sync", "--rebuild")
    assert_one_line_error(r, 5)
    assert "number 3" in r.stderr


def test_journals_rolled_back_to_an_older_set(kind_vault: KindVault) -> None:
    """The store puts back the journal set it had after the first upload."""
    cli = kind_vault.cli
    second = kind_vault.other_machine()
    write(cli.cwd / "a.txt", "first\n")
    cli.ok("upload", "a.txt")
    old_set = set(_journals(kind_vault))
    write(cli.cwd / "a.txt", "first, changed\n")
    cli.ok("upload", "a.txt")
    second.ok("sync")
    write(second.cwd / "c.txt", "from the second machine\n")
    second.ok("upload", "c.txt")  # names the first machine's head
    with kind_vault.raw() as store:
        for name in set(store.list("journal/")) - old_set:
            store.delete(name)
    for who in (cli, second):
        r = who("ls")
        assert r.code == 0  # the local index alone: no store involved
        r = who("sync")
        assert_one_line_error(r, 5)
        assert "the store lost or rolled back journal" in r.stderr
    # A fresh machine sees only a consistent older set: it cannot tell (documented).
    fresh = kind_vault.other_machine()
    assert fresh.ok("ls").out.split() == ["a.txt"]


def test_rollback_of_one_writer_is_seen_by_a_fresh_machine_through_another(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "a.txt", "1\n")
    cli.ok("upload", "a.txt")
    write(cli.cwd / "a.txt", "2\n")
    cli.ok("upload", "a.txt")
    newest = _journals(kind_vault)[-1]
    second = kind_vault.other_machine()
    write(second.cwd / "c.txt", "c\n")
    second.ok("upload", "c.txt")
    with kind_vault.raw() as store:
        store.delete(newest)
    fresh = kind_vault.other_machine(attach=False)
    r = fresh("init", "--store", kind_vault.url)
    assert_one_line_error(r, 5)
    assert "number 2" in r.stderr and "names it" in r.stderr


def test_duplicated_journal_is_exit_5(kind_vault: KindVault) -> None:
    names = _three_journals(kind_vault)
    cli = kind_vault.cli
    with kind_vault.raw() as store:
        blob = store.get_bytes(names[1])
        copy = "journal/" + str(int(names[2].split("/")[1].split("-")[0]) + 1).zfill(20) + "-00000000000000ff"
        store.put_bytes(copy, blob)
    r = cli("sync")
    assert_one_line_error(r, 5)
    assert f"replayed journal {names[1]} as {copy}" in r.stderr
    other = kind_vault.other_machine(attach=False)
    r = other("init", "--store", kind_vault.url)
    assert_one_line_error(r, 5)
    assert "replayed" in r.stderr


def test_two_machines_writing_keep_working(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    second = kind_vault.other_machine()
    for i in range(3):
        write(cli.cwd / f"a{i}.txt", f"a{i}\n")
        cli.ok("upload", f"a{i}.txt")
        write(second.cwd / f"b{i}.txt", f"b{i}\n")
        second.ok("upload", f"b{i}.txt")
    expected = sorted([f"a{i}.txt" for i in range(3)] + [f"b{i}.txt" for i in range(3)])
    for who in (cli, second):
        who.ok("sync")
        assert sorted(who.ok("ls").out.split()) == expected
    fresh = kind_vault.other_machine()
    assert sorted(fresh.ok("ls").out.split()) == expected
    fresh.ok("verify")


# -- 3. replay of damaged journals and bad records --------------------------------------
def test_damaged_journal_is_named_and_later_journals_still_apply(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    write(cli.cwd / "a.txt", "a version 1\n")
    cli.ok("upload", "a.txt")
    write(cli.cwd / "a.txt", "a version 2\n")
    cli.ok("upload", "a.txt")  # this journal gets damaged
    write(cli.cwd / "later.txt", "written after\n")
    cli.ok("upload", "later.txt")
    bad = _journals(kind_vault)[1]
    with kind_vault.raw() as store:
        blob = bytearray(store.get_bytes(bad))
        blob[-5] ^= 1
        store.put_bytes(bad, bytes(blob))
    other = kind_vault.other_machine()  # attaches, with a warning naming it
    assert other.ok("download", "later.txt", "-o", "-").stdout == b"written after\n"
    r = other("download", "a.txt", "-o", "-")  # never version 1 as if it were the newest
    assert_one_line_error(r, 5)
    assert bad in r.stderr and r.stdout == b""
    assert other.ok("download", "a.txt", "--version", "1", "-o", "-").stdout == b"a version 1\n"
    for args in (("sync",), ("verify",)):
        r = other(*args)
        assert_one_line_error(r, 5)
        assert bad in r.stderr
    write(other.cwd / "new.txt", "still works\n")
    r = other("upload", "new.txt")
    assert r.code == 0 and bad in r.stderr  # a warning, and the upload is done


def test_record_that_cannot_be_applied_is_exit_8_and_named(kind_vault: KindVault) -> None:
    from livedata_cli import journal

    cli = kind_vault.cli
    write(cli.cwd / "a.txt", "a\n")
    cli.ok("upload", "a.txt")
    master = _master(kind_vault)
    vault_id = _config(kind_vault)["vault_id"]
    name = journal.new_name()
    records = [{"t": "put", "vid": "0" * 32, "path": "broken.txt"}, {"t": "tag", "vid": "x", "add": ["t"]}]
    with kind_vault.raw() as store:
        store.put_bytes(name, journal.encode(master, vault_id, name, records))
    write(cli.cwd / "b.txt", "b\n")
    r = cli("upload", "b.txt")
    assert r.code == 0 and "broken.txt" in r.stderr
    r = cli("sync")
    assert_one_line_error(r, 8)
    assert name in r.stderr and "'broken.txt'" in r.stderr
    assert sorted(cli.ok("ls").out.split()) == ["a.txt", "b.txt"]
    other = kind_vault.other_machine()
    assert sorted(other.ok("ls").out.split()) == ["a.txt", "b.txt"]


# -- 4. stable version numbers -----------------------------------------------------------
def test_version_numbers_survive_prune_on_every_machine(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    for i in range(1, 5):
        write(cli.cwd / "f.txt", f"version {i}\n")
        cli.ok("upload", "f.txt")
    cli.ok("prune", "--keep-last", "2")
    assert cli.ok("download", "f.txt", "--version", "3", "-o", "-").stdout == b"version 3\n"
    r = cli("download", "f.txt", "--version", "1", "-o", "-")
    assert_one_line_error(r, 3)
    assert "pruned" in r.stderr
    info = cli.ok("info", "f.txt", "--json").json()
    assert [v["version"] for v in info["versions"]] == [3, 4] and info["pruned"] == [1, 2]
    assert "pruned: 1-2" in cli.ok("info", "f.txt").out
    other = kind_vault.other_machine()
    assert other.ok("download", "f.txt", "--version", "3", "-o", "-").stdout == b"version 3\n"
    assert other.ok("info", "f.txt", "--json").json()["version"] == 4
    cli.ok("sync", "--rebuild")
    assert cli.ok("download", "f.txt", "--version", "4", "-o", "-").stdout == b"version 4\n"


# -- 6. journal compaction and key rotation ------------------------------------------------
def _compact(cli: Cli) -> Any:
    """compaction.compact_journals on the vault of this home (the function prune calls)."""
    import subprocess
    import sys

    code = (
        "import json; from livedata_cli.keys.unlock import Unlocker; from livedata_cli.vault.core import Vault; "
        "from livedata_cli.vault.compaction import compact_journals\n"
        "with Vault.open(Unlocker()) as v, v.lock():\n"
        "    c = compact_journals(v); print(json.dumps([c.snapshot, c.records, c.deleted]))"
    )
    p = subprocess.run([sys.executable, "-c", code], env=cli.env, cwd=cli.cwd, capture_output=True, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def _state_of(cli: Cli) -> dict[str, Any]:
    info = cli.ok("info", "a.txt", "--json").json()
    return {
        "ls": sorted(cli.ok("ls").out.split()),
        "trash": sorted(cli.ok("ls", "--trash").out.split()),
        "a": ([v["version"] for v in info["versions"]], info["pruned"], info["tags"], info["notes"]),
        "a3": cli.ok("download", "a.txt", "--version", "3", "-o", "-").stdout,
        "c": cli.ok("download", "c.txt", "-o", "-").stdout,
    }


def _history(kv: KindVault) -> Cli:
    cli = kv.cli
    for i in range(1, 4):
        write(cli.cwd / "a.txt", f"a {i}\n")
        cli.ok("upload", "a.txt")
    cli.ok("prune", "--keep-last", "2")
    write(cli.cwd / "b.txt", "b\n")
    write(cli.cwd / "c.txt", "c\n")
    cli.ok("upload", "b.txt", "c.txt")
    cli.ok("rm", "b.txt")
    cli.ok("tag", "a.txt", "kept")
    cli.ok("note", "a.txt", "a note")
    second = kv.other_machine()
    write(second.cwd / "d.txt", "from the second machine\n")
    second.ok("upload", "d.txt")
    cli.ok("sync")
    return second


def test_compaction_restates_everything_and_keeps_the_chain(kind_vault: KindVault) -> None:
    second = _history(kind_vault)
    cli = kind_vault.cli
    before = _state_of(cli)
    assert before["a"] == ([2, 3], [1], ["kept"], "a note") and before["trash"] == ["b.txt"]
    snapshot, _records, deleted = _compact(cli)
    assert _journals(kind_vault) == [snapshot] and deleted >= 8
    assert _state_of(cli) == before
    second.ok("sync")  # its journals are gone, covered by the snapshot: not a loss
    assert _state_of(second) == before
    fresh = kind_vault.other_machine()
    assert _state_of(fresh) == before
    fresh.ok("verify")
    write(second.cwd / "e.txt", "after\n")
    second.ok("upload", "e.txt")
    for who in (cli, fresh):
        who.ok("sync")
        assert "e.txt" in who.ok("ls").out.split()
    with kind_vault.raw() as store:  # the snapshot itself dropped: a loss again
        store.delete(snapshot)
    assert_one_line_error(cli("sync"), 5)


def test_compaction_leftovers_and_replayed_old_journals_change_nothing(kind_vault: KindVault) -> None:
    """A compaction killed before it deleted the covered journals, or a store
    that plants them back: readers skip what the snapshot restates."""
    _history(kind_vault)
    cli = kind_vault.cli
    before = _state_of(cli)
    with kind_vault.raw() as store:
        old = {n: store.get_bytes(n) for n in store.list("journal/")}
    _compact(cli)
    with kind_vault.raw() as store:
        for name, blob in old.items():
            store.put_bytes(name, blob)
    cli.ok("sync")
    assert _state_of(cli) == before
    fresh = kind_vault.other_machine()
    assert _state_of(fresh) == before  # no purged version comes back
    fresh.ok("sync", "--rebuild")
    assert _state_of(fresh) == before


def test_keys_rotate(kind_vault: KindVault) -> None:
    cli = kind_vault.cli
    second = _history(kind_vault)
    recovery = cli.ok("keys", "add", "--recovery").out.strip()
    before = _state_of(cli)
    old_key = _config(kind_vault)["key_id"]
    with kind_vault.raw() as store:
        data_before = {k: store.get_bytes(k) for k in store.list("data/")}
        old_slots = {k: store.get_bytes(k) for k in store.list("keys/")}
    out = cli.ok("keys", "rotate", "--json").json()
    assert out["previous_key_id"] == old_key and out["key_id"] == _config(kind_vault)["key_id"] != old_key
    with kind_vault.raw() as store:  # no data re-encrypted
        assert {k: store.get_bytes(k) for k in store.list("data/")} == data_before
        assert not set(store.list("keys/")) & set(old_slots)
    assert _state_of(cli) == before
    assert _state_of(second) == before  # its pin follows the rotation, proven by the new key's MAC
    assert_one_line_error(cli("download", "c.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": recovery}), 4)
    with kind_vault.raw() as store:  # an old slot put back by the store opens only the old key
        for k, blob in old_slots.items():
            store.put_bytes(k, blob)
    fresh = kind_vault.other_machine(attach=False)
    assert_one_line_error(fresh("init", "--store", kind_vault.url, env={"LIVEDATA_PASSPHRASE": recovery}), 4)
    fresh.ok("init", "--store", kind_vault.url)
    assert _state_of(fresh) == before
    cli.ok("audit", "verify")  # the audit chain continues across the rotation
    write(cli.cwd / "new.txt", "under the new key\n")
    cli.ok("upload", "new.txt")
    assert second.ok("download", "new.txt", "-o", "-").stdout == b"under the new key\n"


def test_content_stored_before_keys_rotate_still_matches_after_it(cli: Cli) -> None:
    """A file touched since, and the same content under another name, are not
    stored again after a rotation; a restore over it finds it unchanged."""
    cli.ok("init")
    big, small = os.urandom(3 * 1024 * 1024), os.urandom(5000)
    write(cli.cwd / "y.bin", big)
    write(cli.cwd / "s.bin", small)
    cli.ok("upload", "y.bin", "s.bin")
    cli.ok("download", "y.bin", "-o", str(cli.cwd / "restored.bin"))
    cli.ok("keys", "rotate")
    os.utime(cli.cwd / "y.bin", (1e9, 1e9))
    os.utime(cli.cwd / "s.bin", (1e9, 1e9))
    out = cli.ok("upload", "y.bin", "s.bin", "--json").json()
    assert [i["status"] for i in out["items"]] == ["unchanged", "unchanged"], out
    out = cli.ok("upload", "y.bin", "--as", "copy.bin", "--json").json()
    assert out["bytes_stored"] == 0, out
    assert cli.ok("download", "copy.bin", "-o", "-").stdout == big
    cli.ok("download", "y.bin", "-o", str(cli.cwd / "restored.bin"))  # the same content: no --overwrite


def test_keys_rotate_killed_at_random_points_loses_nothing(cli: Cli) -> None:
    import random
    import signal
    import subprocess
    import time

    cli.ok("init")
    files = {f"f{i}.txt": os.urandom(2000 + i) for i in range(12)}
    for name, data in files.items():
        write(cli.cwd / "t" / name, data)
    cli.ok("upload", "t", "--recursive", "--as", "t/")
    rng = random.Random(19)
    t0 = time.monotonic()
    cli.ok("keys", "rotate")
    span = time.monotonic() - t0
    outcomes = []

    def all_there(who: Cli, trial: int) -> None:
        out = who.cwd / f"restore-{trial}"
        who.ok("download", "t/", "-o", str(out))
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files

    for trial in range(6):
        p = cli.popen("keys", "rotate", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        outcomes.append(p.wait())
        all_there(cli, trial)  # every file, right after the kill
        if trial % 2:
            cli.ok("keys", "rotate")  # a rerun finishes; or the next killed run goes on from here
    cli.ok("keys", "rotate")
    cli.ok("verify")
    assert -signal.SIGKILL in outcomes  # some runs really were killed mid-way
    other_home = Cli({**cli.env, "LIVEDATA_HOME": str(cli.cwd.parent / "fresh")}, cli.cwd)
    other_home.ok("init", "--store", str(cli.cwd.parent / "home" / "store"))
    all_there(other_home, 99)
    cli.ok("audit", "verify")


def test_keyring_keeps_the_heads_when_state_json_is_lost(cli: Cli, secret_service: dict[str, str]) -> None:
    """The store rolls back the newest journal and this home lost its state.json
    and index: the OS keyring's copy of the heads still tells."""
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None}
    cli.ok("init", env=env)
    write(cli.cwd / "a.txt", "1\n")
    cli.ok("upload", "a.txt", env=env)
    write(cli.cwd / "a.txt", "2\n")
    cli.ok("upload", "a.txt", env=env)
    home = cli.cwd.parent / "home"
    newest = sorted((home / "store" / "journal").iterdir())[-1]
    newest.unlink()
    (home / "state.json").unlink()
    r = cli("sync", "--rebuild", env=env)
    assert_one_line_error(r, 5)
    assert "OS keyring" in r.stderr


def test_verify_notices_an_applied_journal_changed_in_the_store(kind_vault: KindVault) -> None:
    names = _three_journals(kind_vault)
    with kind_vault.raw() as store:
        blob = bytearray(store.get_bytes(names[2]))
        blob[-3] ^= 1
        store.put_bytes(names[2], bytes(blob))
    kind_vault.cli.ok("sync")  # applied already: sync does not read it again
    r = kind_vault.cli("verify")
    assert r.code == 5 and names[2] in r.stderr


def test_processes_of_one_home_writing_at_once_keep_one_chain(cli: Cli) -> None:
    """Commands that take no vault lock (tag, note) racing in one home: each
    journal still gets the next counter of the home's writer."""
    import subprocess

    cli.ok("init")
    for i in range(4):
        write(cli.cwd / f"f{i}.txt", f"{i}\n")
    cli.ok("upload", *[f"f{i}.txt" for i in range(4)])
    procs = [
        cli.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(4)
        for args in (("tag", f"f{i}.txt", f"t{i}"), ("note", f"f{i}.txt", f"note {i}"))
    ]
    done = [(p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in procs]
    assert [code for code, _err in done] == [0] * len(procs), done
    cli.ok("sync")
    cli.ok("verify")
    fresh = Cli({**cli.env, "LIVEDATA_HOME": str(cli.cwd.parent / "fresh")}, cli.cwd)
    fresh.ok("init", "--store", str(cli.cwd.parent / "home" / "store"))
    assert fresh.ok("info", "f3.txt", "--json").json()["tags"] == ["t3"]
