"""A Live-Data server: resumable uploads, and logging in again on a terminal when the session ends."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from test_api_store import (  # noqa: F401
    PASSWORD,
    account,
    other_home,
    proxies,
    server,
    steps_with_room,
    tokens_file,
)

from conftest import Cli, assert_one_line_error, run_on_tty, write
from pgserver import ServerProcess

pytestmark = pytest.mark.inprocess  # the terminal sessions (run_on_tty) are real processes

MIB = 1024 * 1024


def _token(cli: Cli) -> dict[str, str]:
    (token,) = [t["access_token"] for t in json.loads(tokens_file(cli).read_text()).values()]
    return {"Authorization": f"Bearer {token}"}


def test_a_pack_goes_up_as_one_request(cli: Cli, server: Any) -> None:  # noqa: F811
    """A pack of small files (here 12 MiB, over the 8 MiB parts) is sent from
    memory in one request, not as a resumable upload of four."""
    from livedata_cli.crypto.container import container_size
    from livedata_cli.packs import PACK_TARGET, SMALL_FILE, padded
    from livedata_cli.stores.api import SPOOL_MEMORY

    assert PACK_TARGET + padded(container_size(SMALL_FILE)) <= SPOOL_MEMORY  # the largest pack
    srv = server()
    account(cli, srv.url, "pack@example.com")
    cli.ok("init", "--store", srv.url)
    files = {f"d{i % 3}/f{i:03d}.bin": os.urandom(40 * 1024) for i in range(300)}
    for rel, data in files.items():
        write(cli.cwd / "src" / rel, data)
    cli.ok("upload", "src", "-r", "--as", "t/")
    routes = [json.loads(line).get("route", "") for line in srv.lines if '"request"' in line]
    assert [r for r in routes if "/files/uploads" in r] == []
    cli.ok("download", "t/", "-o", "out")
    assert all((cli.cwd / "out" / rel).read_bytes() == data for rel, data in files.items())


def test_a_pack_cut_mid_request_is_sent_again_and_stored_once(cli: Cli, server: Any, proxies: Any) -> None:  # noqa: F811
    """The connection drops halfway through a pack sent as one request: it is
    sent again, the upload ends 0, every file comes back, and the server keeps
    one file of each name and no partial upload."""
    srv = server()
    proxy = proxies(srv.url)
    account(cli, proxy.url, "cutpack@example.com")
    cli.ok("init", "--store", proxy.url)
    files = {f"d{i % 3}/f{i:03d}.bin": os.urandom(40 * 1024) for i in range(300)}
    for rel, data in files.items():
        write(cli.cwd / "src" / rel, data)
    proxy.cut_after(6 * MIB, "up")
    # A cut the client does not see as a reset is a stalled answer: the stall
    # timeout (30 s by default) is what notices it.
    r = cli("upload", "src", "-r", "--as", "t/", "--json", env={"LIVEDATA_STALL_TIMEOUT": "3"})
    assert r.code == 0, r.stderr
    assert proxy.cuts == 1 and r.json()["counts"] == {"new": len(files) + 3}
    cli.ok("verify", "--data")
    cli.ok("download", "t/", "-o", "out")
    assert all((cli.cwd / "out" / rel).read_bytes() == data for rel, data in files.items())
    names = [i["file_name"] for i in httpx.get(f"{srv.url}/api/v1/files", params={"prefix": "data/", "per_page": 200},
                                                headers=_token(cli)).json()["items"]]
    assert len(names) == len(set(names))
    assert not list((srv.home / "server" / "uploads").glob("*.part"))


def test_a_cut_upload_resumes_from_the_servers_offset(cli: Cli, server: Any, proxies: Any) -> None:  # noqa: F811
    srv = server()
    proxy = proxies(srv.url)
    account(cli, proxy.url, "re@example.com")
    cli.ok("init", "--store", proxy.url)
    data = os.urandom(20 * MIB + 5)
    write(cli.cwd / "big.bin", data)

    before = proxy.bytes["up"]
    proxy.cut_after(15 * MIB + MIB // 2, "up")  # near the end of the second 8 MiB part
    assert cli.ok("upload", "big.bin", "--json").json()["counts"] == {"new": 1}
    assert proxy.cuts == 1
    sent = proxy.bytes["up"] - before
    parts = [json.loads(line) for line in srv.lines if '"upload_part"' in line]
    assert len({p["upload_id"] for p in parts}) == 1  # one upload, resumed: not a second one
    stored = sum(p["received"] - p["first"] for p in parts)
    # The server took each byte once (the object's ciphertext is a little larger than the
    # object) and the part after the cut began where the server stood, not at a part's start.
    assert len(data) < stored == parts[-1]["received"] < len(data) + MIB
    assert [p["first"] for p in parts][1:] == [p["received"] for p in parts][:-1]
    assert any(p["first"] % (8 * MIB) for p in parts)
    # On the wire: what the cut lost in flight was sent again, never the whole object.
    assert len(data) < sent < 2 * len(data)

    out = cli.cwd / "back.bin"
    cli.ok("download", "big.bin", "-o", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    # Nothing unfinished is left behind on the server.
    assert not list((srv.home / "server" / "uploads").glob("*.part"))


@pytest.fixture
def clocked(tmp_path: Path, livedata_env: dict[str, str]) -> Iterator[Any]:
    """A server whose clock is a file the test moves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    clock = tmp_path / "server-clock"
    clock.write_text(str(time.time()))
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"), LIVEDATA_TESTONLY_CLOCK_FILE=str(clock))
    srv = ServerProcess([], env)
    srv.home = tmp_path / "srv"  # type: ignore[attr-defined]
    srv.clock = clock  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def test_an_upload_is_its_owners_alone_and_checks_its_offsets(cli: Cli, clocked: Any) -> None:
    srv = clocked
    account(cli, srv.url, "own@example.com")
    mallory = other_home(cli, "mallory")
    account(mallory, srv.url, "mallory@example.com")
    own, theirs = _token(cli), _token(mallory)
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        r = c.post("/files/uploads", params={"file_name": "data/x", "size": 10}, headers=own)
        assert r.status_code == 201, r.text
        up = r.json()["id"]
        part = {"Content-Range": "bytes 0-5/10", **own}
        assert c.put(f"/files/uploads/{up}", content=b"abcdef", headers=part).json()["received"] == 6
        # Another user's token: 404 everywhere, as for an id that never existed.
        for method, path in (("GET", ""), ("HEAD", ""), ("PUT", ""), ("POST", "/complete"), ("DELETE", "")):
            got = c.request(method, f"/files/uploads/{up}{path}", content=b"ghij",
                            headers={"Content-Range": "bytes 6-9/10", **theirs})
            assert got.status_code == 404, (method, path)
        # A part at the wrong offset is refused and changes nothing; an early commit too.
        wrong = c.put(f"/files/uploads/{up}", content=b"zz", headers={"Content-Range": "bytes 3-4/10", **own})
        assert wrong.status_code == 409
        assert c.head(f"/files/uploads/{up}", headers=own).headers["upload-offset"] == "6"
        assert c.post(f"/files/uploads/{up}/complete", headers=own).status_code == 409
        last = {"Content-Range": "bytes 6-9/10", **own}
        assert c.put(f"/files/uploads/{up}", content=b"ghij", headers=last).json()["received"] == 10
        made = c.post(f"/files/uploads/{up}/complete", headers=own)
        assert made.status_code == 201 and made.json()["size"] == 10
        assert c.get(f"/files/{made.json()['id']}/download", headers=own).content == b"abcdefghij"
        assert c.get(f"/files/uploads/{up}", headers=own).status_code == 404  # committed: gone
        # The owner drops an unfinished one.
        up2 = c.post("/files/uploads", params={"file_name": "data/y"}, headers=own).json()["id"]
        assert c.delete(f"/files/uploads/{up2}", headers=own).status_code == 204
        assert c.get(f"/files/uploads/{up2}", headers=own).status_code == 404
        # Over the quota from the start: refused before a byte is sent.
        huge = c.post("/files/uploads", params={"file_name": "data/z", "size": 2**50}, headers=own)
        assert huge.status_code == 413
        # One left unfinished for a day is dropped, its spool too.
        up3 = c.post("/files/uploads", params={"file_name": "data/w"}, headers=own).json()["id"]
        spool = srv.home / "server" / "uploads" / f"{up3}.part"
        assert spool.exists()
        srv.clock.write_text(str(float(srv.clock.read_text()) + 86_401))
        c.post("/files/uploads", params={"file_name": "data/v"}, headers=own)  # expiry runs here too
        assert c.get(f"/files/uploads/{up3}", headers=own).status_code == 404
        assert not spool.exists()


def _end_session(cli: Cli, srv: Any) -> None:
    """Expire the refresh tokens on the server and spoil the access token, as if a day had passed."""
    db = sqlite3.connect(srv.home / "server" / "server.sqlite")
    db.execute("UPDATE refresh_tokens SET expires_at = 0")
    db.commit()
    db.close()
    data = json.loads(tokens_file(cli).read_text())
    for t in data.values():
        t["access_token"] = "not-a-valid-token"
    tokens_file(cli).write_text(json.dumps(data))


def test_an_ended_session_asks_to_log_in_again_on_a_terminal(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server()
    account(cli, srv.url, "tty@example.com")
    cli.ok("init", "--store", srv.url)
    write(cli.cwd / "first.txt", "one\n")
    cli.ok("upload", "first.txt")
    env = {k: v for k, v in cli.env.items() if k != "LIVEDATA_PASSWORD"}
    # On a terminal: the password is asked and the command goes on.
    _end_session(cli, srv)
    code, out = run_on_tty(["sync"], env, cli.cwd, [PASSWORD], timeout=30)
    assert code == 0, out
    assert "log in again" in out
    assert cli.ok("account", "--json").json()["email"] == "tty@example.com"  # the new tokens were kept
    _end_session(cli, srv)
    write(cli.cwd / "second.txt", "two\n")
    code, out = run_on_tty(["upload", "second.txt"], env, cli.cwd, [PASSWORD], timeout=30)
    assert code == 0, out
    assert cli.ok("download", "second.txt", "-o", "-").stdout == b"two\n"
    # A wrong password on the terminal: exit 4, nothing else.
    _end_session(cli, srv)
    code, out = run_on_tty(["sync"], env, cli.cwd, ["not the password"], timeout=30)
    assert code == 4 and "Traceback" not in out, out
    # Not a terminal: exit 4 with the way out.
    cli.ok("login", "--server", srv.url, "--email", "tty@example.com", env={"LIVEDATA_PASSWORD": PASSWORD})
    _end_session(cli, srv)
    r = cli("sync")
    assert_one_line_error(r, 4)
    assert "livedata login" in r.stderr
    # With MFA on, the terminal is asked the code too.
    cli.ok("login", "--server", srv.url, "--email", "tty@example.com", env={"LIVEDATA_PASSWORD": PASSWORD})
    totp = pyotp.TOTP(cli.ok("mfa", "setup", "--json", "--server", srv.url, env={"LIVEDATA_PASSWORD": PASSWORD}).json()["secret"])
    step = steps_with_room()
    cli.ok("mfa", "verify", totp.at((step - 1) * 30), "--server", srv.url, env={"LIVEDATA_PASSWORD": PASSWORD})
    _end_session(cli, srv)
    code, out = run_on_tty(["sync"], env, cli.cwd, [PASSWORD, totp.at(step * 30)], timeout=30)
    assert code == 0, out
    assert "authenticator" in out
