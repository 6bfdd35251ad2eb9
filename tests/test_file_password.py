"""File passwords: a second secret on one file, on top of the vault key."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli, assert_one_line_error, data_objects, write
from pgserver import postgres  # noqa: F401  (the session's PostgreSQL, for the API store tests)

pytestmark = pytest.mark.inprocess

PW = {"LIVEDATA_FILE_PASSWORD": "my will's password"}
OTHER = {"LIVEDATA_FILE_PASSWORD": "not the password"}


def _store(cli: Cli) -> Path:
    return Path(cli.env["LIVEDATA_HOME"]) / "store"


def _snapshot(cli: Cli) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in data_objects(_store(cli))}


def _entry(cli: Cli, path: str, **kw: Any) -> dict[str, Any]:
    return next(e for e in cli.ok("ls", "--json", **kw).json() if e["path"] == path)


def _protected_vault(cli: Cli, content: bytes = b"my last will " * 100) -> bytes:
    write(cli.cwd / "will.pdf", content)
    cli.ok("upload", "will.pdf", "--password", env=PW)
    return content


def test_round_trip_with_password_and_listing(vault_cli: Cli) -> None:
    content = _protected_vault(vault_cli, os.urandom(1024 * 1024 + 5))
    write(vault_cli.cwd / "plain.txt", "nothing secret")
    vault_cli.ok("upload", "plain.txt")
    vault_cli.ok("download", "will.pdf", "-o", "out.pdf", env=PW)
    assert (vault_cli.cwd / "out.pdf").read_bytes() == content
    assert _entry(vault_cli, "will.pdf")["password"] is True
    assert _entry(vault_cli, "plain.txt")["password"] is False
    long = vault_cli.ok("ls", "--long").out.splitlines()
    assert [line for line in long if "[password]" in line] == [next(x for x in long if "will.pdf" in x)]
    assert vault_cli.ok("info", "will.pdf", "--json").json()["password"] is True
    assert "password: True" in vault_cli.ok("info", "will.pdf").out


def test_vault_key_alone_cannot_produce_the_data_key(vault_cli: Cli, open_vault: Any) -> None:
    from livedata_cli.crypto import container, filepass
    from livedata_cli.crypto.wrap import unwrap_data_key
    from livedata_cli.errors import AuthError, IntegrityError
    from livedata_cli.vault.reading import read_version

    content = _protected_vault(vault_cli)
    vault = open_vault()
    v = vault.resolve("will.pdf")
    # All the vault key opens: the outer wrap, which holds the password envelope, not a data key.
    inner = unwrap_data_key(vault.master_key, vault.vault_id, v.object, v.wrapped_key)
    assert filepass.is_envelope(inner) and len(inner) != 32
    with vault.store.open(v.store_key) as f:  # its own object, or its part of a pack
        f.seek(v.offset)
        sealed = f.read(v.length)
    for guess in (inner[:32], inner[-32:], inner[len(filepass.MAGIC) : len(filepass.MAGIC) + 32]):
        with pytest.raises(IntegrityError):
            container.decrypt_stream(guess, io.BytesIO(sealed), io.BytesIO())
    params, salt, lock = filepass.envelope_params(inner)
    assert lock is None  # a folder store: no server holds a part
    wrong = filepass.PasswordKey.derive("not the password", params, salt)
    assert filepass.open_envelope(wrong, vault.vault_id, v.object, inner) is None
    # The vault itself refuses without the password (no variable, no terminal).
    with pytest.raises(AuthError):
        read_version(vault, v, io.BytesIO())
    right = filepass.PasswordKey.derive(PW["LIVEDATA_FILE_PASSWORD"], params, salt)
    data_key = filepass.open_envelope(right, vault.vault_id, v.object, inner)
    assert data_key is not None
    out = io.BytesIO()
    container.decrypt_stream(data_key, io.BytesIO(sealed), out)
    assert out.getvalue() == content


def test_on_a_terminal_asks_twice_then_once(vault_cli: Cli) -> None:
    from conftest import run_on_tty

    write(vault_cli.cwd / "will.pdf", "typed at a terminal")
    code, out = run_on_tty(["upload", "will.pdf", "--password"], vault_cli.env, vault_cli.cwd, ["pw one", "pw two"])
    assert code == 2 and "differ" in out  # a mismatch stores nothing
    assert vault_cli.ok("ls", "--json").json() == []
    code, out = run_on_tty(["upload", "will.pdf", "--password"], vault_cli.env, vault_cli.cwd, ["typed pw", "typed pw"])
    assert code == 0 and out.count("file password") == 2, out
    code, out = run_on_tty(["download", "will.pdf", "-o", "out.pdf"], vault_cli.env, vault_cli.cwd, ["typed pw"])
    assert code == 0 and "File password for will.pdf" in out, out
    assert (vault_cli.cwd / "out.pdf").read_text() == "typed at a terminal"


def test_wrong_password_exits_4_and_is_audited(vault_cli: Cli) -> None:
    _protected_vault(vault_cli)
    r = vault_cli("download", "will.pdf", "-o", "out.pdf", env=OTHER)
    assert_one_line_error(r, 4)
    assert "wrong file password" in r.stderr
    assert not (vault_cli.cwd / "out.pdf").exists()
    events = vault_cli.ok("audit", "--json").json()
    assert ("file-password", "will.pdf", "denied", 4) in [(e["action"], e["path"], e["result"], e["code"]) for e in events]


def test_missing_password_in_a_script_exits_4_naming_the_variable(vault_cli: Cli) -> None:
    _protected_vault(vault_cli)
    r = vault_cli("download", "will.pdf", "-o", "out.pdf")
    assert_one_line_error(r, 4)
    assert "LIVEDATA_FILE_PASSWORD" in r.stderr
    write(vault_cli.cwd / "other.pdf", "x")
    r = vault_cli("upload", "other.pdf", "--password")
    assert_one_line_error(r, 4)
    assert "LIVEDATA_FILE_PASSWORD" in r.stderr
    assert_one_line_error(vault_cli("upload", "other.pdf", "--password", "--no-password", env=PW), 2)


def test_change_re_encrypts_and_remove_keeps_the_data_object_byte_for_byte(vault_cli: Cli) -> None:
    content = _protected_vault(vault_cli)
    first = _snapshot(vault_cli)
    assert len(first) == 1
    new = {"LIVEDATA_FILE_PASSWORD": PW["LIVEDATA_FILE_PASSWORD"], "LIVEDATA_NEW_FILE_PASSWORD": "a new one"}
    assert_one_line_error(vault_cli("password", "change", "will.pdf", env={**new, **OTHER}), 4)
    assert _snapshot(vault_cli) == first  # a wrong current password changes nothing
    r = vault_cli.ok("password", "change", "will.pdf", "--json", env=new).json()
    assert r["versions"] == 1 and r["password"] is True
    before = _snapshot(vault_cli)  # a new object under a new data key; the old one is gone
    assert len(before) == 1 and before.keys() != first.keys()
    assert_one_line_error(vault_cli("download", "will.pdf", "-o", "-", env=PW), 4)
    assert vault_cli.ok("download", "will.pdf", "-o", "-", env={"LIVEDATA_FILE_PASSWORD": "a new one"}).stdout == content
    vault_cli.ok("password", "remove", "will.pdf", env={"LIVEDATA_FILE_PASSWORD": "a new one"})
    assert _snapshot(vault_cli) == before
    assert vault_cli.ok("download", "will.pdf", "-o", "-").stdout == content
    assert _entry(vault_cli, "will.pdf")["password"] is False
    assert_one_line_error(vault_cli("password", "remove", "will.pdf"), 2)
    vault_cli.ok("password", "set", "will.pdf", env=PW)
    assert len(_snapshot(vault_cli)) == 1 and _snapshot(vault_cli).keys() != before.keys()
    assert_one_line_error(vault_cli("download", "will.pdf", "-o", "-"), 4)
    assert_one_line_error(vault_cli("password", "set", "will.pdf", env=PW), 2)


def test_protection_survives_a_rebuild_in_another_home(vault_cli: Cli, tmp_path: Path) -> None:
    content = _protected_vault(vault_cli)
    vault_cli.ok("password", "change", "will.pdf", env={**PW, "LIVEDATA_NEW_FILE_PASSWORD": "second"})
    other = {"LIVEDATA_HOME": str(tmp_path / "home2")}
    vault_cli.ok("init", "--store", str(_store(vault_cli)), env=other)
    vault_cli.ok("sync", "--rebuild", env=other)
    assert _entry(vault_cli, "will.pdf", env=other)["password"] is True
    assert_one_line_error(vault_cli("download", "will.pdf", "-o", "-", env=other), 4)
    assert_one_line_error(vault_cli("download", "will.pdf", "-o", "-", env={**other, **PW}), 4)
    got = vault_cli.ok("download", "will.pdf", "-o", "-", env={**other, "LIVEDATA_FILE_PASSWORD": "second"})
    assert got.stdout == content


def test_new_versions_stay_protected_unless_no_password(vault_cli: Cli) -> None:
    _protected_vault(vault_cli)
    write(vault_cli.cwd / "will.pdf", "second draft")
    assert_one_line_error(vault_cli("upload", "will.pdf"), 4)  # keeping the password needs it
    vault_cli.ok("upload", "will.pdf", env=PW)
    versions = vault_cli.ok("info", "will.pdf", "--json").json()["versions"]
    assert [v["password"] for v in versions] == [True, True]
    assert_one_line_error(vault_cli("download", "will.pdf", "-o", "-"), 4)
    write(vault_cli.cwd / "will.pdf", "third draft, public")
    vault_cli.ok("upload", "will.pdf", "--no-password")
    assert vault_cli.ok("download", "will.pdf", "-o", "-").stdout == b"third draft, public"
    versions = vault_cli.ok("info", "will.pdf", "--json").json()["versions"]
    assert [v["password"] for v in versions] == [True, True, False]


def test_no_deduplication_across_protection(vault_cli: Cli) -> None:
    same = b"the same content in three files"
    write(vault_cli.cwd / "plain.txt", same)
    write(vault_cli.cwd / "secret.txt", same)
    write(vault_cli.cwd / "copy.txt", same)
    vault_cli.ok("upload", "plain.txt")
    r = vault_cli.ok("upload", "secret.txt", "--password", "--json", env=PW).json()
    assert r["items"][0]["deduplicated"] is False
    r = vault_cli.ok("upload", "copy.txt", "--json").json()
    assert r["items"][0]["deduplicated"] is True
    objects = {e["path"]: e["object"] for e in vault_cli.ok("ls", "--json").json()}
    assert objects["copy.txt"] == objects["plain.txt"] != objects["secret.txt"]
    assert len(_snapshot(vault_cli)) == 2
    # A password set later: later uploads of that content do not reuse its (now protected) key.
    vault_cli.ok("rm", "--purge", "copy.txt")
    r = vault_cli.ok("password", "set", "plain.txt", "--json", env=PW).json()
    assert r["unprotected_copies"] == []
    write(vault_cli.cwd / "later.txt", same)
    r = vault_cli.ok("upload", "later.txt", "--json").json()
    assert r["items"][0]["deduplicated"] is False
    assert vault_cli.ok("download", "later.txt", "-o", "-").stdout == same


def test_prefix_download_writes_the_others_and_exits_8(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "docs/a.txt", "open")
    write(vault_cli.cwd / "docs/will.pdf", "sealed")
    vault_cli.ok("upload", "docs/a.txt", "--as", "docs/a.txt")
    vault_cli.ok("upload", "docs/will.pdf", "--as", "docs/will.pdf", "--password", env=PW)
    r = vault_cli("download", "docs/", "-o", "out")
    assert r.code == 8, r.stderr
    assert "will.pdf" in r.stderr and "LIVEDATA_FILE_PASSWORD" in r.stderr
    assert (vault_cli.cwd / "out/a.txt").read_text() == "open"
    assert not (vault_cli.cwd / "out/will.pdf").exists()
    vault_cli.ok("download", "docs/", "-o", "out2", env=PW)
    assert (vault_cli.cwd / "out2/will.pdf").read_text() == "sealed"


def test_verify_checks_protected_files_without_their_password(vault_cli: Cli) -> None:
    _protected_vault(vault_cli)
    r = vault_cli.ok("verify", "--data", "--json").json()
    assert r["problems"] == [] and r["objects"] == 1


def test_convert_asks_first_and_keeps_the_result_protected(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "will.md", "# My will\n\nEverything to the cat.\n")
    vault_cli.ok("upload", "will.md", "--password", env=PW)
    r = vault_cli("convert", "will.md", "--to", "html")
    assert_one_line_error(r, 4)
    assert "LIVEDATA_FILE_PASSWORD" in r.stderr
    assert_one_line_error(vault_cli("convert", "will.md", "--to", "html", env=OTHER), 4)
    assert [e["path"] for e in vault_cli.ok("ls", "--json").json()] == ["will.md"]
    vault_cli.ok("convert", "will.md", "--to", "html", env=PW)
    assert _entry(vault_cli, "will.html")["password"] is True
    assert_one_line_error(vault_cli("download", "will.html", "-o", "-"), 4)
    assert b"cat" in vault_cli.ok("download", "will.html", "-o", "-", env=PW).stdout


def test_share_asks_for_the_password_first(vault_cli: Cli) -> None:
    _protected_vault(vault_cli)
    r = vault_cli("share", "will.pdf", "--out", "w.ldshare")
    assert_one_line_error(r, 4)
    assert not (vault_cli.cwd / "w.ldshare").exists()
    vault_cli.ok("share", "will.pdf", "--out", "w.ldshare", env=PW)
    assert (vault_cli.cwd / "w.ldshare").exists()


# -- on a Live-Data API store: the server's attempt limits ---------------------------------
@pytest.fixture(params=["sqlite"])
def api_vault(cli: Cli, tmp_path: Path, livedata_env: dict[str, str], request: pytest.FixtureRequest) -> Any:
    """A vault in an account of a real ``livedata server`` whose file-lock clock a test moves
    (SQLite, or PostgreSQL where a test asks for it with indirect parametrisation)."""
    from pgserver import ServerProcess

    args = [] if request.param == "sqlite" else ["--db", request.getfixturevalue("postgres").create_database()]
    clock = tmp_path / "server-clock"
    clock.write_text("1800000000")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"), LIVEDATA_TESTONLY_CLOCK_FILE=str(clock))
    srv = ServerProcess(args, env)
    try:
        account = {"LIVEDATA_PASSWORD": "a long account password"}
        cli.ok("register", "--server", srv.url, "--email", "ada@example.com", env=account)
        cli.ok("login", "--server", srv.url, "--email", "ada@example.com", env=account)
        cli.ok("init", "--store", srv.url)
        yield cli, clock, tmp_path / "srv"
    finally:
        srv.stop()


@pytest.mark.parametrize("api_vault", ["sqlite", "postgresql"], indirect=True)
def test_api_store_limits_guesses_and_the_limit_ends_after_its_delay(api_vault: Any, open_vault: Any) -> None:
    from livedata_cli.crypto import filepass
    from livedata_cli.crypto.wrap import unwrap_data_key
    from livedata_cli.server.filelocks import LOCK_FREE_FAILURES, delay

    cli, clock, server_home = api_vault
    content = _protected_vault(cli)
    assert cli.ok("download", "will.pdf", "-o", "-", env=PW).stdout == content
    # The envelope names its server lock; the password key alone does not open it.
    vault = open_vault()
    v = vault.resolve("will.pdf")
    inner = unwrap_data_key(vault.master_key, vault.vault_id, v.object, v.wrapped_key)
    params, salt, lock = filepass.envelope_params(inner)
    assert lock is not None
    key = filepass.PasswordKey.derive(PW["LIVEDATA_FILE_PASSWORD"], params, salt)
    assert filepass.open_envelope(key, vault.vault_id, v.object, inner) is None
    # A few wrong passwords are exit 4; then the server refuses (exit 7), even the right one.
    for _ in range(LOCK_FREE_FAILURES - 1):
        assert_one_line_error(cli("download", "will.pdf", "-o", "-", env=OTHER), 4)
    assert_one_line_error(cli("download", "will.pdf", "-o", "-", env=OTHER), 4)  # the one that starts the delay
    refused = cli("download", "will.pdf", "-o", "-", env=PW)
    assert_one_line_error(refused, 7)
    assert "retry in" in refused.stderr
    # Just before the delay ends: still refused; after it: the right password opens.
    start = 1800000000 + delay(LOCK_FREE_FAILURES, LOCK_FREE_FAILURES)
    clock.write_text(str(start - 1))
    assert_one_line_error(cli("download", "will.pdf", "-o", "-", env=PW), 7)
    clock.write_text(str(start + 1))
    assert cli.ok("download", "will.pdf", "-o", "-", env=PW).stdout == content
    # A wrong one after the delay: the next delay is longer (doubled).
    assert_one_line_error(cli("download", "will.pdf", "-o", "-", env=OTHER), 4)
    assert delay(LOCK_FREE_FAILURES + 1, LOCK_FREE_FAILURES) == 2 * delay(LOCK_FREE_FAILURES, LOCK_FREE_FAILURES)
    # The server never saw the password: no trace of it in its database or blobs.
    needle = PW["LIVEDATA_FILE_PASSWORD"].encode()
    files = [p for p in server_home.rglob("*") if p.is_file()]
    assert files and not [p for p in files if needle in p.read_bytes()]


def test_api_store_change_and_remove_replace_the_server_lock(api_vault: Any) -> None:
    import sqlite3

    cli, _clock, home = api_vault

    def locks() -> list[str]:
        with sqlite3.connect(home / "server" / "server.sqlite") as db:
            return [r[0] for r in db.execute("SELECT id FROM file_locks")]

    content = _protected_vault(cli)
    first = locks()
    assert len(first) == 1
    new = {**PW, "LIVEDATA_NEW_FILE_PASSWORD": "a new one"}
    cli.ok("password", "change", "will.pdf", env=new)
    assert len(locks()) == 1 and locks() != first  # a new lock; the old one is gone
    assert_one_line_error(cli("download", "will.pdf", "-o", "-", env=PW), 4)
    got = cli.ok("download", "will.pdf", "-o", "-", env={"LIVEDATA_FILE_PASSWORD": "a new one"})
    assert got.stdout == content
    write(cli.cwd / "will.pdf", "a second version, same password")
    cli.ok("upload", "will.pdf", env={"LIVEDATA_FILE_PASSWORD": "a new one"})  # stays protected: a lock of its own
    assert len(locks()) == 2
    cli.ok("password", "remove", "will.pdf", env={"LIVEDATA_FILE_PASSWORD": "a new one"})
    assert locks() == []
    assert cli.ok("download", "will.pdf", "-o", "-", "--version", "1").stdout == content


def test_api_store_counts_failures_per_account_too(api_vault: Any) -> None:
    from livedata_cli.server.filelocks import ACCOUNT_FREE_FAILURES, LOCK_FREE_FAILURES

    cli, _clock, _home = api_vault
    names = [f"f{i}.txt" for i in range(ACCOUNT_FREE_FAILURES // LOCK_FREE_FAILURES + 2)]
    for name in names:
        write(cli.cwd / name, name)
    cli.ok("upload", *names, "--password", env=PW)
    wrong = 0
    for name in names[:-1]:  # each file's own free failures, until the account's run out
        for _ in range(LOCK_FREE_FAILURES):
            if wrong < ACCOUNT_FREE_FAILURES:
                assert_one_line_error(cli("download", name, "-o", "-", env=OTHER), 4)
                wrong += 1
    assert wrong == ACCOUNT_FREE_FAILURES
    # A file never guessed at is refused now too: the account is in its delay.
    assert_one_line_error(cli("download", names[-1], "-o", "-", env=PW), 7)


def test_a_record_naming_a_server_file_lock_on_a_folder_store_is_damage(tmp_path: Path) -> None:
    """File locks live on a Live-Data server; a record naming one on another store
    (a vault's objects copied off its server) is refused as damage (exit 5), not
    a crash on a missing attribute."""
    from livedata_cli.errors import ExitCode, IntegrityError
    from livedata_cli.remote import password_gates
    from livedata_cli.stores.local import LocalStore

    store = LocalStore(tmp_path / "store")
    store.prepare()
    assert not password_gates.supported(store)
    for call in (
        lambda: password_gates.release(store, "lock-id", "verifier", "a.txt"),
        lambda: password_gates.delete(store, "lock-id"),
    ):
        with pytest.raises(IntegrityError) as caught:
            call()
        assert caught.value.exit_code == ExitCode.INTEGRITY and "not a Live-Data API store" in str(caught.value)
