"""Roles, the admin API, ``livedata server users`` and the IP retention, on a real ``livedata server`` process."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_store import PASSWORD, server  # noqa: F401  (fixture)

from conftest import Cli, assert_one_line_error

DAY = 24 * 3600


def sqlite_url(srv: Any) -> str:
    return f"sqlite:///{Path(srv.home) / 'server' / 'server.sqlite'}"


def register(api: str, email: str) -> None:
    r = httpx.post(f"{api}/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text


def login(api: str, email: str) -> dict[str, str]:
    r = httpx.post(f"{api}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def running(cli: Cli, server: Any) -> tuple[Any, str, dict[str, str], dict[str, str]]:  # noqa: F811
    """A server with an administrator (made by the operator command) and a user with one file."""
    srv = server()
    api = f"{srv.url}/api/v1"
    cli.ok(
        "server",
        "create-admin",
        "ops@example.com",
        "--db",
        sqlite_url(srv),
        env={"LIVEDATA_ADMIN_PASSWORD": PASSWORD},
    )
    register(api, "ada@example.com")
    admin, user = login(api, "ops@example.com"), login(api, "ada@example.com")
    r = httpx.post(
        f"{api}/files", params={"file_name": "f.bin"}, content=b"x" * 1000, headers=bearer(user)
    )
    assert r.status_code == 201
    return srv, api, admin, user


def test_roles_admin_api_and_no_access_to_files(
    running: tuple[Any, str, dict[str, str], dict[str, str]],
) -> None:
    _, api, admin, user = running
    assert httpx.get(f"{api}/admin/users", headers=bearer(user)).status_code == 403
    assert httpx.get(f"{api}/admin/users").status_code == 401
    listing = httpx.get(f"{api}/admin/users", headers=bearer(admin)).json()
    assert listing["total"] == 2
    by_email = {u["email"]: u for u in listing["items"]}
    ada = by_email["ada@example.com"]
    assert set(ada) == {
        "id",
        "email",
        "role",
        "created_at",
        "disabled",
        "disabled_at",
        "used_bytes",
        "files",
    }
    assert (ada["role"], ada["disabled"], ada["files"]) == ("user", False, 1) and ada[
        "used_bytes"
    ] >= 1000
    assert by_email["ops@example.com"]["role"] == "admin"
    assert (
        httpx.post(f"{api}/admin/users/{ada['id']}/disable", headers=bearer(user)).status_code
        == 403
    )
    assert httpx.post(f"{api}/admin/users/nope/disable", headers=bearer(admin)).status_code == 404
    me = by_email["ops@example.com"]["id"]
    assert httpx.post(f"{api}/admin/users/{me}/disable", headers=bearer(admin)).status_code == 409

    # An administrator sees no file of another account: the same 404 as any other user.
    fid = httpx.get(f"{api}/files", headers=bearer(user)).json()["items"][0]["id"]
    for path in (f"/files/{fid}", f"/files/{fid}/download"):
        assert httpx.get(api + path, headers=bearer(admin)).status_code == 404, path
    assert httpx.delete(f"{api}/files/{fid}", headers=bearer(admin)).status_code == 404
    assert httpx.get(f"{api}/files", headers=bearer(admin)).json()["total"] == 0
    assert httpx.get(f"{api}/files/{fid}", headers=bearer(user)).status_code == 200


def test_disabled_account_ends_sessions_and_cannot_log_in_or_refresh(
    cli: Cli, running: tuple[Any, str, dict[str, str], dict[str, str]]
) -> None:
    srv, api, admin, user = running
    ada = next(
        u
        for u in httpx.get(f"{api}/admin/users", headers=bearer(admin)).json()["items"]
        if u["email"] == "ada@example.com"
    )
    r = httpx.post(f"{api}/admin/users/{ada['id']}/disable", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["disabled"] is True and r.json()["disabled_at"]
    assert httpx.get(f"{api}/users/me", headers=bearer(user)).status_code == 401  # at once
    r = httpx.post(f"{api}/auth/refresh-token", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    r = httpx.post(f"{api}/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    r = httpx.post(
        f"{api}/auth/login", json={"email": "ada@example.com", "password": "a wrong password"}
    )
    assert r.status_code == 401  # a wrong password learns nothing about the account's state
    r = cli(
        "login",
        "--server",
        srv.url,
        "--email",
        "ada@example.com",
        env={"LIVEDATA_PASSWORD": PASSWORD},
    )
    assert_one_line_error(r, 4)
    assert "disabled" in r.stderr

    r = httpx.post(f"{api}/admin/users/{ada['id']}/enable", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["disabled"] is False
    again = login(api, "ada@example.com")
    assert httpx.get(f"{api}/users/me", headers=bearer(again)).status_code == 200
    actions = [
        e["action"]
        for e in httpx.get(f"{api}/users/me/audit-logs", headers=bearer(admin)).json()["items"]
    ]
    assert "admin.user_disable" in actions and "admin.user_enable" in actions


def test_server_users_commands(
    cli: Cli, running: tuple[Any, str, dict[str, str], dict[str, str]]
) -> None:
    srv, api, _, user = running
    db = ["--db", sqlite_url(srv)]
    listed = cli.ok("server", "users", "list", "--json", *db).json()
    assert [u["email"] for u in listed] == ["ada@example.com", "ops@example.com"]
    assert {u["role"] for u in listed} == {"admin", "user"}
    text = cli.ok("server", "users", "list", *db).out
    assert "ada@example.com" in text and "active" in text

    off = cli.ok("server", "users", "disable", "Ada@Example.com", "--json", *db).json()
    assert off["email"] == "ada@example.com" and off["disabled"] is True
    assert httpx.get(f"{api}/users/me", headers=bearer(user)).status_code == 401
    assert (
        httpx.post(
            f"{api}/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        ).status_code
        == 403
    )
    assert "disabled" in cli.ok("server", "users", "list", *db).out
    on = cli.ok("server", "users", "enable", "ada@example.com", "--json", *db).json()
    assert on["disabled"] is False and on["disabled_at"] is None
    login(api, "ada@example.com")
    assert_one_line_error(cli("server", "users", "disable", "nobody@example.com", *db), 3)
    assert_one_line_error(cli("server", "users", "frobnicate", *db), 2)


def test_ip_addresses_are_erased_after_the_retention(
    cli: Cli,
    server: Any,  # noqa: F811
    tmp_path: Path,
    livedata_env: dict[str, str],
) -> None:
    srv = server()
    api = f"{srv.url}/api/v1"
    register(api, "ada@example.com")
    tokens = login(api, "ada@example.com")
    httpx.get(f"{api}/users/me", headers=bearer(tokens))
    path = Path(srv.home) / "server" / "server.sqlite"
    db = ["--db", f"sqlite:///{path}"]

    def ips() -> tuple[list[Any], list[Any]]:
        with sqlite3.connect(path) as conn:
            audit = [r[0] for r in conn.execute("SELECT ip FROM audit_logs")]
            cols = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")} & {"ip", "last_ip"}
            sessions = [
                v for c in sorted(cols) for (v,) in conn.execute(f"SELECT {c} FROM sessions")
            ]
        return audit, sessions

    audit, sessions = ips()
    assert audit and set(audit) == {"127.0.0.1"}
    assert "127.0.0.1" in sessions  # the sign-in IP of the session (migration 006)
    clock = tmp_path / "clock"
    env = {"LIVEDATA_TESTONLY_CLOCK_FILE": str(clock)}
    clock.write_text(str(time.time() + 29 * DAY))
    cli.ok("server", "migrate", *db, env=env)
    assert ips()[0] == audit  # inside 30 days: kept
    clock.write_text(str(time.time() + 10 * DAY))
    cli.ok("server", "migrate", "--ip-retention-days", "7", *db, env=env)
    after, sessions_after = ips()
    assert set(after) == {None} and set(sessions_after) <= {None}
    with sqlite3.connect(path) as conn:  # the records stay, without their IPs
        assert (
            conn.execute("SELECT count(*) FROM audit_logs WHERE action = 'auth.login'").fetchone()[
                0
            ]
            == 1
        )

    # A server start purges too: new records, a later clock, a second server on the same database.
    httpx.get(f"{api}/users/me", headers=bearer(tokens))
    assert "127.0.0.1" in ips()[0]
    clock.write_text(str(time.time() + 31 * DAY))
    livedata_env["LIVEDATA_TESTONLY_CLOCK_FILE"] = str(clock)  # what the server fixture passes on
    server(*db)
    assert set(ips()[0]) == {None}
