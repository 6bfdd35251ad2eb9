"""The server's keys: the token secret only signs JWTs, a sealing secret of its own feeds the
HKDF of sealed values, and an old key version can be retired once no blob uses it.

A real ``livedata server`` process on SQLite; the key file and the database
are read and edited directly where the test plays an older server home.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, assert_one_line_error
from livedata_cli.crypto import wrap
from livedata_cli.server.keys import ServerKeys
from pgserver import PASSWORD, ServerProcess


@pytest.fixture
def start(livedata_env: dict[str, str]) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def factory() -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(livedata_env)
        server = ServerProcess([], env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _home(cli: Cli) -> Path:
    return Path(cli.env["LIVEDATA_HOME"]) / "server"


def _auth(c: httpx.Client, email: str) -> dict[str, str]:
    c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    r = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_an_old_key_version_is_retired_only_when_no_blob_uses_it(start: Any, cli: Cli) -> None:
    server = start()
    keys_file = _home(cli) / "keys.json"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        auth = _auth(c, "ret@example.com")
        old = c.post("/api/v1/files", content=b"old" * 1000, headers=auth).json()["id"]
        # A version added but not yet used to re-wrap (a rotation cut short): version 1 is still in use.
        assert ServerKeys(keys_file).rotate() == 2
        r = cli("server", "retire-key", "1")
        assert_one_line_error(r, 7)
        assert "1 blob data keys still use key version 1" in r.stderr and "rotate-key" in r.stderr
        assert_one_line_error(cli("server", "retire-key", "2"), 2)  # the current one
        assert_one_line_error(cli("server", "retire-key", "9"), 3)
        assert sorted(json.loads(keys_file.read_text())["versions"]) == ["1", "2"]

        assert cli.ok("server", "rotate-key", "--json").json() == {"version": 3, "rewrapped": 1}
        assert cli.ok("server", "retire-key", "1", "--json").json() == {"retired": 1, "versions": 2}
        assert "key version 2 retired; 1 version left" in cli.ok("server", "retire-key", "2").stderr
        assert sorted(json.loads(keys_file.read_text())["versions"]) == ["3"]
        assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
        # The running server still serves the blob, under the version left.
        assert c.get(f"/api/v1/files/{old}/download", headers=auth).content == b"old" * 1000
        new = c.post("/api/v1/files", content=b"new", headers=auth).json()["id"]
        assert c.get(f"/api/v1/files/{new}/download", headers=auth).content == b"new"


def _legacy_totp_key(token_secret: bytes) -> bytes:
    """The key the token secret fed before the split."""
    return wrap.hkdf(token_secret, b"livedata-server", b"livedata/server/v1/totp")


def test_the_token_secret_and_the_sealing_secret_are_separate_and_an_old_home_is_migrated(
    start: Any, cli: Cli
) -> None:
    server = start()
    keys_file = _home(cli) / "keys.json"
    data = json.loads(keys_file.read_text())
    assert len(bytes.fromhex(data["sealing_secret"])) == 32 and data["sealing_secret"] != data["token_secret"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        auth = _auth(c, "old@example.com")
    server.stop()

    # Play a server home from before the split: no sealing secret, a TOTP secret sealed
    # under a key the token secret fed.
    token_secret = bytes.fromhex(data["token_secret"])
    (db_path,) = [p for p in _home(cli).rglob("*.sqlite*") if not p.name.endswith(("-wal", "-shm", "-journal"))]
    legacy = wrap.seal(_legacy_totp_key(token_secret), b"JBSWY3DPEHPK3PXP", b"totp")
    with sqlite3.connect(db_path) as con:
        con.execute("UPDATE users SET mfa_secret = ? WHERE email = ?", (legacy, "old@example.com"))
    con.close()
    del data["sealing_secret"]
    keys_file.write_text(json.dumps(data))

    server = start()  # every start migrates
    migrated = json.loads(keys_file.read_text())
    assert migrated["token_secret"] == data["token_secret"] and migrated["versions"] == data["versions"]
    assert len(bytes.fromhex(migrated["sealing_secret"])) == 32 and "sealing_migration" not in migrated
    with sqlite3.connect(db_path) as con:
        (resealed,) = con.execute("SELECT mfa_secret FROM users WHERE email = ?", ("old@example.com",)).fetchone()
    con.close()
    assert resealed != legacy
    assert ServerKeys(keys_file).open("totp", resealed) == b"JBSWY3DPEHPK3PXP"
    sealing_key = wrap.hkdf(bytes.fromhex(migrated["sealing_secret"]), b"livedata-server", b"livedata/server/v1/totp")
    assert wrap.open_sealed(sealing_key, resealed, b"totp") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(Exception):  # noqa: B017 - the token secret no longer opens it
        wrap.open_sealed(_legacy_totp_key(token_secret), resealed, b"totp")
    # The same token secret still signs: the session from before goes on.
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/v1/users/me", headers=auth).json()["email"] == "old@example.com"
    assert cli.ok("server", "migrate", "--json").json() == {"applied": []}
