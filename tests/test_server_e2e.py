"""``livedata server`` as a real process: start, round trips, mail, logs, key rotation, operator commands."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, assert_one_line_error
from pgserver import PASSWORD, Mailbox, PgServer, ServerProcess, free_port, postgres  # noqa: F401


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    pg: PgServer = request.getfixturevalue("postgres")
    return ["--db", pg.create_database()]


@pytest.fixture
def start(livedata_env: dict[str, str]) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def factory(*args: str) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(livedata_env)
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _login(c: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, Any]:
    r = c.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_round_trip_reset_mail_and_clean_json_logs(start: Any, mailbox: Mailbox, db_args: list[str]) -> None:
    server = start("--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox.port), *db_args)
    secrets_seen: list[str] = [PASSWORD]
    request_ids: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/api/v1/auth/register", json={"email": "eve@example.com", "password": PASSWORD, "first_name": "Eve"})
        assert r.status_code == 201
        tokens = _login(c, "eve@example.com")
        secrets_seen += [tokens["access_token"], tokens["refresh_token"]]
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        data = os.urandom(3 * 1024 * 1024 + 17)

        def body() -> Iterator[bytes]:
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        r = c.post("/api/v1/files", params={"file_name": "big.bin"}, content=body(), headers=auth)
        assert r.status_code == 201, r.text
        request_ids.append(r.headers["x-request-id"])
        fid = r.json()["id"]
        with c.stream("GET", f"/api/v1/files/{fid}/download", headers=auth) as resp:
            assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
            got = b"".join(resp.iter_bytes())
        assert got == data

        assert c.post("/api/v1/auth/password-reset/request", json={"email": "eve@example.com"}).status_code == 202
        assert c.post("/api/v1/auth/password-reset/request", json={"email": "nobody@example.com"}).status_code == 202
        for _ in range(200):  # the mail goes after the answer
            if mailbox.messages:
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert len(mailbox.messages) == 1 and "To: eve@example.com" in mailbox.messages[0]
        text = email.message_from_string(mailbox.messages[0], policy=email.policy.default).get_content()  # type: ignore[attr-defined]
        token = re.search(r"usable once:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        secrets_seen.append(token)
        new_password = "brand new password 2"
        secrets_seen.append(new_password)
        r = c.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password})
        assert r.status_code == 204
        assert c.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "x" * 12}).status_code == 400
        assert c.get("/api/v1/users/me", headers=auth).status_code == 401  # sessions ended by the reset
        assert c.post("/api/v1/auth/login", json={"email": "eve@example.com", "password": PASSWORD}).status_code == 401
        fresh = _login(c, "eve@example.com", new_password)
        secrets_seen += [fresh["access_token"], fresh["refresh_token"]]
        r = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {fresh['access_token']}", "X-Request-ID": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        request_ids.append("abc-123")
    server.stop()

    records = [json.loads(line) for line in server.lines]  # every line is one JSON document
    requests = [rec for rec in records if rec.get("event") == "request"]
    assert len(requests) >= 12
    by_id = {rec["request_id"]: rec for rec in requests}
    for rid in request_ids:
        assert by_id[rid]["status"] in (200, 201) and by_id[rid]["ip"] == "127.0.0.1"
    assert by_id["abc-123"]["route"] == "/api/v1/users/me"
    log = server.log()
    for secret in secrets_seen:
        assert secret not in log
        assert urllib.parse.quote(secret) not in log


def test_declared_length_longer_than_body_stores_nothing(start: Any) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/api/v1/auth/register", json={"email": "len@example.com", "password": PASSWORD})
        token = _login(c, "len@example.com")["access_token"]
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                b"POST /api/v1/files?file_name=x HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n".encode()
                + b"only a few bytes"
            )
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            while s.recv(65536):
                pass
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/v1/files", headers=auth).json()["total"] == 0
        assert c.get("/api/v1/users/me/storage", headers=auth).json()["used_bytes"] == 0


def test_rotate_key_while_the_server_serves(start: Any, cli: Cli, db_args: list[str]) -> None:
    server = start(*db_args)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/api/v1/auth/register", json={"email": "rot@example.com", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {_login(c, 'rot@example.com')['access_token']}"}
        before = c.post("/api/v1/files", content=b"old" * 1000, headers=auth).json()["id"]
        r = cli.ok("server", "rotate-key", "--json", *db_args)
        assert r.json() == {"version": 2, "rewrapped": 1}
        after = c.post("/api/v1/files", content=b"new", headers=auth).json()["id"]
        assert c.get(f"/api/v1/files/{before}/download", headers=auth).content == b"old" * 1000
        assert c.get(f"/api/v1/files/{after}/download", headers=auth).content == b"new"
    keys = json.loads((Path(cli.env["LIVEDATA_HOME"]) / "server" / "keys.json").read_text())
    assert sorted(keys["versions"]) == ["1", "2"]
    assert oct((Path(cli.env["LIVEDATA_HOME"]) / "server" / "keys.json").stat().st_mode & 0o777) == "0o600"


def test_operator_commands_and_their_errors(cli: Cli, request: pytest.FixtureRequest) -> None:
    pg: PgServer = request.getfixturevalue("postgres")
    url = pg.create_database()
    from livedata_cli.server.db import MIGRATIONS

    applied = cli.ok("server", "migrate", "--json", "--db", url).json()["applied"]
    assert applied == [name for name, _ in MIGRATIONS] and applied[:2] == ["001_initial", "002_files_by_name"]
    assert cli.ok("server", "migrate", "--json", "--db", url).json() == {"applied": []}
    assert "up to date" in cli.ok("server", "migrate", "--db", url).stderr
    r = cli("server", "create-admin", "ops@example.com")
    assert_one_line_error(r, 2)
    r = cli.ok("server", "create-admin", "Ops@Example.com", "--json", "--db", url, env={"LIVEDATA_ADMIN_PASSWORD": PASSWORD})
    assert r.json()["email"] == "ops@example.com" and r.json()["is_admin"] is True
    assert PASSWORD not in r.out + r.stderr
    assert_one_line_error(cli("server", "migrate", "--db", "mysql+nodriver://x/y"), 2)
    r = cli("server", "migrate", "--db", f"postgresql://u:hunter2secret@127.0.0.1:{free_port()}/x")
    assert_one_line_error(r, 6)
    assert "hunter2secret" not in r.stderr

    from fastapi.testclient import TestClient

    from livedata_cli.server.app import create_app
    from livedata_cli.server.config import ServerConfig

    with TestClient(create_app(ServerConfig(db_url=url, weaken_kdf=True))) as c:
        tokens = _login(c, "ops@example.com")  # type: ignore[arg-type]
        me = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
        assert me["is_admin"] is True


def test_port_in_use_is_a_clean_error(cli: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("server", "--port", str(s.getsockname()[1]))
    assert_one_line_error(r, 2)
