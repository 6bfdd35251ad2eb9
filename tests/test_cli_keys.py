"""Key slots and passphrase sources (DESIGN §5) through the installed command."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from conftest import PASSPHRASE, Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

NO_PASS = {"LIVEDATA_PASSPHRASE": None}


def test_wrong_passphrase_exit_4(vault_cli: Cli) -> None:
    r = vault_cli("ls", env={"LIVEDATA_PASSPHRASE": "wrong"})
    # ls reads only the index; a command that needs the key must refuse.
    write(vault_cli.cwd / "a.txt", "a")
    r = vault_cli("upload", "a.txt", env={"LIVEDATA_PASSPHRASE": "wrong"})
    assert_one_line_error(r, 4)
    assert "passphrase" in r.stderr
    assert vault_cli.ok("ls", "--json").json() == []


def test_no_passphrase_without_tty_names_every_option(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    r = vault_cli("upload", "a.txt", env=NO_PASS)
    assert_one_line_error(r, 4)
    for var in ("LIVEDATA_PASSPHRASE", "LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND"):
        assert var in r.stderr


def test_two_passphrase_sources_are_an_error(vault_cli: Cli, tmp_path: Path) -> None:
    pf = write(tmp_path / "pass", PASSPHRASE + "\n")
    write(vault_cli.cwd / "a.txt", "a")
    r = vault_cli("upload", "a.txt", env={"LIVEDATA_PASSPHRASE_FILE": str(pf)})
    assert_one_line_error(r, 2)
    assert "LIVEDATA_PASSPHRASE and LIVEDATA_PASSPHRASE_FILE" in r.stderr


def test_passphrase_file_and_command(vault_cli: Cli, tmp_path: Path) -> None:
    pf = write(tmp_path / "pass", PASSPHRASE + "\n")
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt", env={"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_FILE": str(pf)})
    r = vault_cli.ok(
        "download", "a.txt", "-o", "-",
        env={"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_COMMAND": f"cat {pf}"},
    )
    assert r.out == "a"
    r = vault_cli("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_COMMAND": "false"})
    assert_one_line_error(r, 4)


@pytest.mark.parametrize("broken", ["new\npass", "new pass\r", "\nnew"])
def test_a_new_passphrase_with_a_line_break_is_refused(cli: Cli, broken: str) -> None:
    """A passphrase file, a command's output and a prompt give one line: a
    passphrase holding a line break could only ever come from the variable."""
    r = cli("init", env={"LIVEDATA_PASSPHRASE": broken})
    assert_one_line_error(r, 2)
    assert "line break" in r.stderr
    cli.ok("init")
    write(cli.cwd / "a.txt", "a")
    cli.ok("upload", "a.txt")
    for args in (("keys", "passwd"), ("keys", "add")):
        r = cli(*args, env={"LIVEDATA_NEW_PASSPHRASE": broken})
        assert_one_line_error(r, 2)
        assert "line break" in r.stderr
    assert cli.ok("download", "a.txt", "-o", "-").out == "a"  # the old passphrase still opens it


def test_a_passphrase_file_that_is_not_text_is_a_wrong_passphrase(vault_cli: Cli, tmp_path: Path) -> None:
    pf = tmp_path / "pass"
    pf.write_bytes(b"\xffpw\n")
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt")
    r = vault_cli("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_FILE": str(pf)})
    assert_one_line_error(r, 4)


def test_passwd_changes_passphrase_without_touching_data(vault_cli: Cli, store_dir: Path) -> None:
    write(vault_cli.cwd / "a.txt", "kept")
    vault_cli.ok("upload", "a.txt")
    data_before = {p: p.read_bytes() for p in (store_dir / "data").rglob("*") if p.is_file()}
    vault_cli.ok("keys", "passwd", env={"LIVEDATA_NEW_PASSPHRASE": "new secret"})
    data_after = {p: p.read_bytes() for p in (store_dir / "data").rglob("*") if p.is_file()}
    assert data_before == data_after
    assert_one_line_error(vault_cli("download", "a.txt", "-o", "-"), 4)
    assert vault_cli.ok("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": "new secret"}).out == "kept"


def test_second_passphrase_and_recovery_key(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "x")
    vault_cli.ok("upload", "a.txt")
    vault_cli.ok("keys", "add", env={"LIVEDATA_PASSPHRASE_FILE": None, "LIVEDATA_NEW_PASSPHRASE": "second"})
    # keys add takes the new passphrase from the usual sources for the new secret.
    rec = vault_cli.ok("keys", "add", "--recovery", "--json").json()
    key = rec["recovery_key"]
    assert len(key.replace("-", "")) == 52
    slots = vault_cli.ok("keys", "ls", "--json").json()
    assert sorted(s["kind"] for s in slots) == ["passphrase", "passphrase", "recovery"]
    for secret in ("second", key, key.lower().replace("-", " ")):
        assert vault_cli.ok("download", "a.txt", "-o", "-", env={"LIVEDATA_PASSPHRASE": secret}).out == "x"


def test_key_file_for_a_job_opens_without_the_passphrase_and_is_revoked_alone(
    vault_cli: Cli, tmp_path: Path
) -> None:
    key = tmp_path / "job" / "backup.key"
    key.parent.mkdir()
    r = vault_cli.ok("keys", "add", "--key-file", str(key), "--json").json()
    assert r["kind"] == "recovery" and r["key_file"] == str(key) and "recovery_key" not in r
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    job = {"LIVEDATA_PASSPHRASE": None, "LIVEDATA_PASSPHRASE_FILE": str(key)}
    write(vault_cli.cwd / "a.txt", "from cron")
    vault_cli.ok("upload", "a.txt", env=job)
    assert vault_cli.ok("download", "a.txt", "-o", "-", env=job).out == "from cron"
    before = key.read_bytes()
    assert_one_line_error(vault_cli("keys", "add", "--key-file", str(key)), 2)  # never overwritten
    assert key.read_bytes() == before
    assert_one_line_error(vault_cli("keys", "add", "--key-file", str(tmp_path / "k2"), "--recovery"), 2)
    vault_cli.ok("keys", "rm", r["slot"])
    write(vault_cli.cwd / "a.txt", "revoked")
    assert_one_line_error(vault_cli("upload", "a.txt", env=job), 4)
    vault_cli.ok("upload", "a.txt")  # the passphrase still opens it


def test_cannot_remove_last_slot(vault_cli: Cli) -> None:
    slot = vault_cli.ok("keys", "ls", "--json").json()[0]["slot"]
    assert_one_line_error(vault_cli("keys", "rm", slot), 2)
    assert_one_line_error(vault_cli("keys", "rm", "pass-000000000000"), 3)


def test_store_holds_no_secret_in_clear(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "secret-name.txt", "top secret content")
    vault_cli.ok("upload", "secret-name.txt", "--tag", "private-tag")
    for p in store_dir.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            for needle in (b"secret-name", b"top secret", b"private-tag", PASSPHRASE.encode()):
                assert needle not in blob, (p, needle)
            assert socket.gethostname().encode() not in blob, p  # the store lock names no machine
    config = json.loads((store_dir / "config").read_text())
    assert set(config) >= {"vault_id", "format", "suite", "key_id"}
    # Nothing secret in the home either: vault.json names the store only.
    home = tmp_path / "home"
    assert PASSPHRASE.encode() not in (home / "vault.json").read_bytes()
    assert PASSPHRASE.encode() not in (home / "index.sqlite").read_bytes()


def test_attach_second_home_sees_everything(vault_cli: Cli, store_dir: Path, tmp_path: Path) -> None:
    write(vault_cli.cwd / "d" / "a.txt", "a")
    vault_cli.ok("upload", "d", "-r", "--tag", "t1")
    vault_cli.ok("rm", "d/a.txt")
    vault_cli.ok("restore", "d/a.txt")
    other = {"LIVEDATA_HOME": str(tmp_path / "laptop2")}
    assert_one_line_error(vault_cli("init", "--store", str(store_dir), env={**other, "LIVEDATA_PASSPHRASE": "nope"}), 4)
    r = vault_cli.ok("init", "--store", str(store_dir), "--json", env=other).json()
    assert r["created"] is False and r["versions"] == 1
    rows = vault_cli.ok("ls", "--json", env=other).json()
    assert [(x["path"], x["tags"]) for x in rows] == [("d/a.txt", ["t1"])]
    # Changes from one machine reach the other after sync.
    write(vault_cli.cwd / "b.txt", "b")
    vault_cli.ok("upload", "b.txt")
    assert vault_cli.ok("sync", "--json", env=other).json()["versions"] == 2
    assert vault_cli.ok("download", "b.txt", "-o", "-", env=other).out == "b"


def test_index_lost_is_rebuilt_by_sync(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.txt", "a")
    vault_cli.ok("upload", "a.txt", "--tag", "x")
    for p in (tmp_path / "home").glob("index.sqlite*"):
        p.unlink()
    assert vault_cli.ok("ls", "--json").json() == []
    vault_cli.ok("sync")
    assert [x["tags"] for x in vault_cli.ok("ls", "--json").json()] == [["x"]]


def test_init_twice_on_other_store_refused(vault_cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(vault_cli("init", "--store", str(tmp_path / "elsewhere")), 2)


def test_lock_without_keyring_says_nothing_cached(vault_cli: Cli) -> None:
    r = vault_cli.ok("lock", "--json").json()
    assert r["locked"] is True and r["key_was_cached"] is False


# Keyring backends that ``PYTHON_KEYRING_BACKEND`` loads in the child process: each holds the
# vault's key or nothing, and deletes as a real backend does or refuses.
KEYRINGS = """
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError


class Empty(KeyringBackend):
    priority = 10

    def get_password(self, service, username):
        return None

    def set_password(self, service, username, password):
        pass

    def delete_password(self, service, username):
        raise PasswordDeleteError("Password not found")


class Refusing(Empty):
    \"\"\"A locked collection: the key is there, and deleting it is refused.\"\"\"

    def get_password(self, service, username):
        return "00" * 32

    def delete_password(self, service, username):
        raise PasswordDeleteError("the collection is locked")


class Broken(Refusing):
    def delete_password(self, service, username):
        raise KeyringError("the Secret Service did not answer")
"""


@pytest.mark.parametrize("backend", ["Refusing", "Broken"])
def test_lock_fails_when_the_keyring_keeps_the_key(vault_cli: Cli, tmp_path: Path, backend: str) -> None:
    (tmp_path / "test_keyrings.py").write_text(KEYRINGS)
    env = {"LIVEDATA_NO_KEYRING": None, "PYTHONPATH": str(tmp_path), "PYTHON_KEYRING_BACKEND": f"test_keyrings.{backend}"}
    r = vault_cli("lock", env=env)
    assert_one_line_error(r, 2)
    assert "may still be cached" in r.stderr and "no key was cached" not in r.stderr
    # A keyring that holds nothing: the same answer to delete is "nothing was cached".
    r = vault_cli.ok("lock", env={**env, "PYTHON_KEYRING_BACKEND": "test_keyrings.Empty"})
    assert r.stderr.strip() == "locked (no key was cached)"


def test_home_files_are_not_world_readable(vault_cli: Cli, tmp_path: Path) -> None:
    index = tmp_path / "home" / "index.sqlite"
    assert not index.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def test_wrong_passphrase_on_a_folder_download_fails_once(vault_cli: Cli) -> None:
    for i in range(5):
        write(vault_cli.cwd / "d" / f"{i}.txt", str(i))
    vault_cli.ok("upload", "d", "-r")
    r = vault_cli("download", "d/", "-o", "out", env={"LIVEDATA_PASSPHRASE": "wrong"})
    assert_one_line_error(r, 4)
    assert not (vault_cli.cwd / "out").exists() or not any((vault_cli.cwd / "out").iterdir())
