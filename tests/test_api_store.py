"""The CLI on a real ``livedata server`` process: accounts, MFA, and https:// stores.

Each test starts its own server on 127.0.0.1 (SQLite, and PostgreSQL for the
main round trip); a small TCP proxy in between cuts connections in flight and
answers with 429/503 to prove resume and retry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from tcpproxy import Proxy

from conftest import Cli, assert_one_line_error, write
from pgserver import PgServer, ServerProcess, free_port, postgres  # noqa: F401

pytestmark = pytest.mark.inprocess

PASSWORD = "a long account password"
SECRET_NAME = "quarterly-secret-plan.txt"
SECRET_TEXT = b"the merger happens on tuesday, tell nobody\n"
MIB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path, livedata_env: dict[str, str]) -> Iterator[Any]:
    """Start ``livedata server`` (own home under tmp_path/srv-N) with extra arguments."""
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        home = tmp_path / f"srv-{len(started)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(livedata_env, LIVEDATA_HOME=str(home))
        s = ServerProcess(list(args), env)
        s.home = home  # type: ignore[attr-defined]
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture
def proxies() -> Iterator[Any]:
    made: list[Proxy] = []

    def factory(url: str) -> Proxy:
        p = Proxy(int(url.rsplit(":", 1)[1]))
        made.append(p)
        return p

    yield factory
    for p in made:
        p.stop()


def other_home(cli: Cli, name: str) -> Cli:
    """The same person on another machine: a fresh LIVEDATA_HOME."""
    home = Path(cli.env["LIVEDATA_HOME"]).parent / name
    work = home.parent / f"{name}-work"
    work.mkdir(parents=True)
    return Cli({**cli.env, "LIVEDATA_HOME": str(home)}, work, inprocess=cli.inprocess)


def account(cli: Cli, url: str, email: str) -> None:
    """Register and log in (no MFA)."""
    env = {"LIVEDATA_PASSWORD": PASSWORD}
    cli.ok("register", "--server", url, "--email", email, env=env)
    cli.ok("login", "--server", url, "--email", email, env=env)


def tokens_file(cli: Cli) -> Path:
    return Path(cli.env["LIVEDATA_HOME"]) / "tokens.json"


def steps_with_room() -> int:
    """The current TOTP step, after waiting out a step about to end: the code of the
    step before must still be accepted when it reaches the server."""
    left = 30 - time.time() % 30
    if left < 4:
        time.sleep(left + 0.2)
    return int(time.time() // 30)


def documented() -> dict[str, Any]:
    """The account commands' JSON shapes in docs/json.md, by command path (``mfa setup``)."""
    text = (Path(__file__).parent.parent / "docs" / "json.md").read_text()
    out = {}
    for section in text.split("\n### ")[1:]:
        m = re.match(r"`livedata ([a-z ]+?) (?:-|[0-9])[^`]*`\n.*?```jsonc\n(.*?)\n```", section, re.S)
        if m:
            out[m.group(1)] = json.loads(m.group(2))
    return out


def same_keys(command: str, got: dict[str, Any]) -> None:
    assert set(got) == set(documented()[command]), (command, sorted(set(got) ^ set(documented()[command])))


def grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p}: {n!r}" for n in needles if n in data]
    return found


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_account_mfa_and_round_trips_leave_no_plaintext_on_the_server(
    cli: Cli, server: Any, database: str, request: pytest.FixtureRequest
) -> None:
    """An account with MFA, a vault in it used from two machines, and afterwards not one
    name, tag, note or byte of content anywhere in the server's database or blobs.

    The commands run in the test's process (the server is a real process of its own).
    Ada's password is checked ten times within the minute (logins, MFA setup, verify and
    disable), exactly the server's per-account budget of 10 a minute; the wrong-password
    login is Zed's, so the flow never waits out a 429 whatever the machine's speed."""
    args = [] if database == "sqlite" else ["--db", request.getfixturevalue("postgres").create_database()]
    srv = server(*args)
    url = srv.url
    env = {"LIVEDATA_PASSWORD": PASSWORD}

    r = cli.ok("register", "--server", url, "--email", "Ada@Example.com", "--first-name", "Ada", env=env)
    assert "livedata login --server" in r.stderr and "livedata init --store" in r.stderr
    assert_one_line_error(cli("register", "--server", url, "--email", "ada@example.com", env=env), 2)
    same_keys("register", cli.ok("register", "--server", url, "--email", "zed@example.com", "--json", env=env).json())
    assert_one_line_error(cli("login", "--server", url, "--email", "zed@example.com",
                              env={"LIVEDATA_PASSWORD": "wrong password!"}), 4)
    login = cli.ok("login", "--server", url, "--email", "ada@example.com", "--json", env=env).json()
    assert login == {"server": url, "email": "ada@example.com", "mfa": False, "tokens": "file"}
    same_keys("login", login)
    assert oct(tokens_file(cli).stat().st_mode & 0o777) == "0o600"  # no keyring here: the 0600 file

    # MFA: set up (the QR code and URI on stderr), confirm, log in again with a code.
    assert_one_line_error(cli("mfa", "setup", "--server", url), 4)  # the password is asked again
    assert_one_line_error(cli("mfa", "setup", "--server", url, env={"LIVEDATA_PASSWORD": "wrong password!"}), 4)
    text = cli.ok("mfa", "setup", "--server", url, env=env).stderr
    assert "otpauth://totp/" in text and "▀" in text  # segno's compact terminal QR code
    assert "livedata mfa verify" in text
    setup = cli.ok("mfa", "setup", "--json", "--server", url, env=env).json()
    same_keys("mfa setup", setup)
    assert setup["mfa_enabled"] is False and setup["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(setup["secret"])
    step = steps_with_room()
    assert_one_line_error(cli("mfa", "verify", "000000", "--server", url, env=env), 4)
    verified = cli.ok("mfa", "verify", totp.at((step - 1) * 30), "--json", "--server", url, env=env).json()
    assert verified["mfa_enabled"] is True and len(verified["recovery_codes"]) == 10
    same_keys("mfa verify", verified)
    cli.ok("logout", "--server", url)
    assert_one_line_error(cli("login", "--server", url, "--email", "ada@example.com", env=env), 4)  # code needed
    mfa_env = {**env, "LIVEDATA_TOTP": totp.at(step * 30)}
    assert cli.ok("login", "--server", url, "--email", "ada@example.com", "--json", env=mfa_env).json()["mfa"] is True
    info = cli.ok("account", "--server", url, "--json").json()
    same_keys("account", info)
    assert (info["email"], info["first_name"], info["mfa_enabled"], info["files"]) == ("ada@example.com", "Ada", True, 0)

    # A vault in the account: every command as with the other stores.
    init = cli.ok("init", "--store", url + "/", "--json").json()
    assert init["store"] == url and init["created"] is True
    work = cli.cwd
    big = os.urandom(12 * MIB + 5)
    write(work / "empty.bin", b"")
    write(work / SECRET_NAME, SECRET_TEXT)
    write(work / "big.bin", big)
    up = cli.ok("upload", "empty.bin", SECRET_NAME, "big.bin", "--tag", "confidential-tag", "--json").json()
    assert up["counts"] == {"new": 3}
    assert sorted(x["path"] for x in cli.ok("ls", "--json").json()) == ["big.bin", "empty.bin", SECRET_NAME]
    cli.ok("tag", SECRET_NAME, "board-only")
    cli.ok("note", SECRET_NAME, "a note the server must not see")
    found = cli.ok("search", "quarterly", "--tag", "board-only", "--json").json()["results"]
    assert [x["path"] for x in found] == [SECRET_NAME]
    for name, data in (("empty.bin", b""), (SECRET_NAME, SECRET_TEXT), ("big.bin", big)):
        out = work / "out" / name
        cli.ok("download", name, "-o", str(out))
        assert out.read_bytes() == data, name
    assert cli.ok("download", SECRET_NAME, "-o", "-").stdout == SECRET_TEXT
    assert cli.ok("verify", "--data", "--json").json()["problems"] == []

    # Another machine of the same person attaches to the vault in the account.
    laptop = other_home(cli, "laptop")
    laptop.ok("login", "--server", url, "--email", "ada@example.com", "--recovery-code",
              verified["recovery_codes"][0], env=env)
    assert laptop.ok("init", "--store", url, "--json").json()["created"] is False
    assert laptop.ok("download", "big.bin", "-o", "-").stdout == big
    cli.ok("rm", "empty.bin")
    laptop.ok("sync")
    assert "empty.bin" not in laptop.ok("ls").out

    # The audit trail merges the server's records, marked by source.
    events = cli.ok("audit", "--json").json()
    sources = {e["source"] for e in events}
    assert sources == {"local", "server"}, sources
    assert any(e["source"] == "server" and e["action"] == "file.upload" for e in events)

    account_info = cli.ok("account", "--json").json()  # the server comes from the vault's store
    assert account_info["used_bytes"] > len(big) and account_info["files"] >= 5
    off = cli.ok("mfa", "disable", "--code", totp.at((step + 1) * 30), "--json", env=env).json()
    same_keys("mfa disable", off)
    assert cli.ok("account", "--json").json()["mfa_enabled"] is False
    out = cli.ok("logout", "--json").json()
    same_keys("logout", out)
    assert out["revoked"] is True
    assert_one_line_error(cli("sync"), 4)  # logged out: the store needs a login

    # What the server holds: opaque keys and ciphertext only.
    srv.stop()
    needles = [SECRET_NAME.encode(), b"quarterly", b"confidential-tag", b"board-only",
               b"must not see", SECRET_TEXT.strip(), big[1000:1064]]
    assert grep_tree(srv.home, needles) == []
    if database == "sqlite":
        db = sqlite3.connect(srv.home / "server" / "server.sqlite")
        names = [r[0] for r in db.execute("SELECT file_name FROM files")]
        db.close()
        assert names and all(n == "config" or n.split("/")[0] in ("keys", "data", "journal", "audit", "audit-head", "locks") for n in names)


def test_dropped_connections_resume_and_overloads_are_retried(
    cli: Cli, server: Any, proxies: Any
) -> None:
    srv = server()
    proxy = proxies(srv.url)
    account(cli, proxy.url, "bo@example.com")
    cli.ok("init", "--store", proxy.url)
    data = os.urandom(20 * MIB + 3)
    write(cli.cwd / "big.bin", data)

    proxy.cut_after(6 * MIB, "up")  # the upload's connection dies a third of the way in
    r = cli.ok("upload", "big.bin", "--json")
    assert proxy.cuts == 1 and r.json()["counts"] == {"new": 1}

    proxy.cut_after(9 * MIB, "down")  # and the download's, nearly half way
    out = cli.cwd / "back.bin"
    cli.ok("download", "big.bin", "-o", str(out))
    assert proxy.cuts == 2
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()

    proxy.answer_next(2, 503, retry_after=1)  # an overloaded server: retried after Retry-After
    assert cli.ok("account", "--json").json()["email"] == "bo@example.com"
    assert proxy.answered == 2
    proxy.answer_next(10, 429, retry_after=0)  # still rate limited after the retries: exit 7
    assert_one_line_error(cli("account", env={"LIVEDATA_API_RETRIES": "2"}), 7)


def test_quota_full_is_exit_7_and_nothing_is_lost(cli: Cli, server: Any) -> None:
    srv = server("--quota", str(3 * MIB))
    account(cli, srv.url, "cy@example.com")
    cli.ok("init", "--store", srv.url)
    write(cli.cwd / "small.txt", "fits\n")
    write(cli.cwd / "huge.bin", os.urandom(4 * MIB))
    write(cli.cwd / "spooled.bin", os.urandom(10 * MIB))  # sent while being written
    cli.ok("upload", "small.txt")
    r = cli("upload", "huge.bin")
    assert_one_line_error(r, 7)
    assert "quota" in r.stderr
    assert_one_line_error(cli("upload", "spooled.bin"), 7)
    assert cli.ok("download", "small.txt", "-o", "-").stdout == b"fits\n"
    assert "huge.bin" not in cli.ok("ls").out


def test_another_users_token_cannot_read_the_files(cli: Cli, server: Any) -> None:
    srv = server()
    account(cli, srv.url, "dee@example.com")
    cli.ok("init", "--store", srv.url)
    write(cli.cwd / "mine.txt", "only for dee\n")
    cli.ok("upload", "mine.txt")
    mallory = other_home(cli, "mallory")
    account(mallory, srv.url, "mallory@example.com")
    theirs = json.loads(tokens_file(mallory).read_text())
    (token,) = [t["access_token"] for t in theirs.values()]
    ours = json.loads(tokens_file(cli).read_text())
    (own,) = [t["access_token"] for t in ours.values()]
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        files = c.get("/files", params={"per_page": 200}, headers={"Authorization": f"Bearer {own}"}).json()["items"]
        assert files
        for f in files:
            for path in (f"/files/{f['id']}", f"/files/{f['id']}/download"):
                assert c.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 404
        assert c.get("/files", headers={"Authorization": f"Bearer {token}"}).json()["total"] == 0
    # Dee's vault with Mallory's token (LIVEDATA_TOKEN): nothing of Dee's is there.
    r = cli("download", "mine.txt", "-o", "-", env={"LIVEDATA_TOKEN": token})
    assert r.code in (3, 5) and b"only for dee" not in r.stdout
    # Mallory's own vault in her account is hers alone.
    assert mallory.ok("init", "--store", srv.url, "--json").json()["created"] is True


def test_refresh_is_transparent_an_ended_session_is_exit_4_and_logout_revokes(cli: Cli, server: Any) -> None:
    srv = server()
    account(cli, srv.url, "eli@example.com")
    path = tokens_file(cli)

    def edit(**values: str) -> dict[str, Any]:
        data = json.loads(path.read_text())
        (key,) = data
        old = dict(data[key])
        data[key].update(values)
        path.write_text(json.dumps(data))
        return old

    before = edit(access_token="not-a-valid-token")  # as if it had expired
    assert cli.ok("account", "--json").json()["email"] == "eli@example.com"
    after = json.loads(path.read_text())
    (now,) = after.values()
    assert now["refresh_token"] != before["refresh_token"] and now["access_token"] != "not-a-valid-token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    db = sqlite3.connect(srv.home / "server" / "server.sqlite")
    db.execute("UPDATE refresh_tokens SET expires_at = 0")
    db.commit()
    db.close()
    edit(access_token="not-a-valid-token")
    r = cli("account")
    assert_one_line_error(r, 4)
    assert "livedata login" in r.stderr

    cli.ok("login", "--server", srv.url, "--email", "eli@example.com", env={"LIVEDATA_PASSWORD": PASSWORD})
    (live,) = json.loads(path.read_text()).values()
    out = cli.ok("logout", "--json").json()
    assert out == {"server": srv.url, "revoked": True, "was_logged_in": True}
    assert not json.loads(path.read_text())
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        assert c.get("/users/me", headers={"Authorization": f"Bearer {live['access_token']}"}).status_code == 401
        assert c.post("/auth/refresh-token", json={"refresh_token": live["refresh_token"]}).status_code == 401
    assert_one_line_error(cli("account", "--server", srv.url), 4)


def test_logout_with_the_server_down_forgets_the_tokens_and_says_the_server_was_not_told(
    cli: Cli, server: Any
) -> None:
    srv = server()
    account(cli, srv.url, "ida@example.com")
    assert json.loads(tokens_file(cli).read_text())
    srv.stop()
    r = cli("logout", "--server", srv.url, "--json", env={"LIVEDATA_API_RETRIES": "0"})
    assert r.code == 0, r.stderr
    assert r.json() == {"server": srv.url, "revoked": False, "was_logged_in": True}
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"livedata: warning: {srv.url} was not told (cannot reach") and "Traceback" not in r.stderr
    assert not json.loads(tokens_file(cli).read_text())
    r = cli.ok("logout", "--server", srv.url)
    assert r.stderr.strip() == f"not logged in to {srv.url}"


def test_bad_urls_and_an_unreachable_server(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("login", "--server", "http://example.com", "--email", "a@b.c"), 2)
    assert_one_line_error(cli("init", "--store", "ftp://example.com"), 2)
    assert_one_line_error(cli("account"), 2)  # which server?
    down = f"http://127.0.0.1:{free_port()}"
    r = cli("login", "--server", down, "--email", "a@b.c",
            env={"LIVEDATA_PASSWORD": PASSWORD, "LIVEDATA_API_RETRIES": "1"})
    assert_one_line_error(r, 6)
    assert_one_line_error(cli("init", "--store", down), 4)  # not logged in there


def test_server_and_email_from_a_profile(cli: Cli, server: Any) -> None:
    srv = server()
    home = Path(cli.env["LIVEDATA_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[profiles.work]\nserver = "{srv.url}"\nemail = "fay@example.com"\nstore = "{srv.url}"\n'
    )
    env = {"LIVEDATA_PASSWORD": PASSWORD}
    cli.ok("--profile", "work", "register", env=env)
    assert cli.ok("--profile", "work", "login", "--json", env=env).json()["email"] == "fay@example.com"
    assert cli.ok("--profile", "work", "init", "--json").json()["store"] == srv.url
    write(cli.cwd / "x.txt", "work file\n")
    cli.ok("--profile", "work", "upload", "x.txt")
    assert cli.ok("--profile", "work", "download", "x.txt", "-o", "-").stdout == b"work file\n"
    assert cli.ok("--profile", "work", "account", "--json").json()["email"] == "fay@example.com"
    assert not tokens_file(cli).exists()  # the profile keeps its tokens in its own home
    assert (home / "profiles" / "work" / "tokens.json").exists()
    assert_one_line_error(cli("account"), 2)  # no profile: no server known


@pytest.mark.keyring
def test_tokens_live_in_the_os_keyring_when_there_is_one(
    cli: Cli, server: Any, secret_service: dict[str, str]
) -> None:
    srv = server()
    env = {**secret_service, "LIVEDATA_NO_KEYRING": None, "LIVEDATA_PASSWORD": PASSWORD}
    cli.ok("register", "--server", srv.url, "--email", "gus@example.com", env=env)
    r = cli.ok("login", "--server", srv.url, "--email", "gus@example.com", "--json", env=env)
    assert r.json()["tokens"] == "keyring"
    assert not tokens_file(cli).exists()  # no file where a keyring exists
    info = cli.ok("account", "--server", srv.url, "--json", env=env).json()
    assert (info["email"], info["tokens"]) == ("gus@example.com", "keyring")
    cli.ok("logout", "--server", srv.url, env=env)
    assert_one_line_error(cli("account", "--server", srv.url, env=env), 4)
