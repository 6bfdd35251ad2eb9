"""Resumable uploads on a real ``livedata server`` process (SQLite and PostgreSQL): the quota counts
spools, open uploads are capped and expire when idle, parts and commits are atomic under parallel
requests, a killed server's leftovers go at the next start, stalled clients are cut off, and an
account deletion leaves nothing readable in the SQLite files."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver import PASSWORD, PgServer, ServerProcess, postgres  # noqa: F401

API = "/api/v1"


class Srv:
    """A started server, with the folder it lives in."""

    def __init__(self, proc: ServerProcess, home: Path, db_url: str) -> None:
        self.proc, self.home, self.db_url = proc, home, db_url

    @property
    def url(self) -> str:
        return self.proc.url


@pytest.fixture
def launch(
    tmp_path: Path, livedata_env: dict[str, str]
) -> Iterator[Callable[..., Srv]]:
    started: list[ServerProcess] = []

    def factory(db_url: str | None, *args: str, home: Path | None = None, env: dict[str, str] | None = None) -> Srv:
        home = home or tmp_path / f"srv-{len(started)}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        full.update(livedata_env, LIVEDATA_HOME=str(home), **(env or {}))
        db_args = ["--db", db_url] if db_url else []
        proc = ServerProcess([*db_args, *args], full)
        started.append(proc)
        return Srv(proc, home, db_url or f"sqlite:///{home / 'server' / 'server.sqlite'}")

    yield factory
    for p in started:
        p.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # the server's default, under its LIVEDATA_HOME
    pg: PgServer = request.getfixturevalue("postgres")
    return pg.create_database()


def account(url: str, email: str | None = None) -> dict[str, str]:
    email = email or f"u{secrets.token_hex(4)}@example.com"
    with httpx.Client(base_url=url + API, timeout=30) as c:
        r = c.post("/auth/register", json={"email": email, "password": PASSWORD, "first_name": "A", "last_name": "B"})
        assert r.status_code == 201, r.text
        r = c.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def open_upload(c: httpx.Client, auth: dict[str, str], name: str = "f", **params: Any) -> str:
    r = c.post("/files/uploads", params={"file_name": name, **params}, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def put(c: httpx.Client, auth: dict[str, str], up: str, first: int, data: bytes, total: str = "*") -> httpx.Response:
    rng = f"bytes {first}-{first + len(data) - 1}/{total}"
    return c.put(f"/files/uploads/{up}", content=data, headers={**auth, "Content-Range": rng})


# -- Medium 6: spools, open uploads, idle time ----------------------------------------------


def test_spooled_bytes_count_against_the_quota(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url, "--quota", "1000000")
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        a = open_upload(c, auth, "a")
        assert put(c, auth, a, 0, b"a" * 600_000).status_code == 200
        # 600,000 spooled: a plain upload of 500,000 no longer fits, nor does a part of another upload.
        r = c.post("/files", params={"file_name": "p"}, content=b"p" * 500_000, headers=auth)
        assert r.status_code == 413 and r.json()["code"] == "quota_exceeded", r.text
        b = open_upload(c, auth, "b")
        r = put(c, auth, b, 0, b"b" * 500_000)
        assert r.status_code == 413, r.text
        assert c.get(f"/files/uploads/{b}", headers=auth).json()["received"] == 0
        # Opening one declared bigger than the room left is refused at once.
        assert c.post("/files/uploads", params={"file_name": "c", "size": 500_000}, headers=auth).status_code == 413
        # What fits still goes; the commit turns the spool into stored bytes, and the room stays the same.
        assert put(c, auth, b, 0, b"b" * 300_000).status_code == 200
        made = c.post(f"/files/uploads/{a}/complete", headers=auth)
        assert made.status_code == 201, made.text
        r = c.post("/files", params={"file_name": "q"}, content=b"q" * 150_000, headers=auth)
        assert r.status_code == 413, r.text
        assert c.post("/files", params={"file_name": "q"}, content=b"q" * 90_000, headers=auth).status_code == 201


def test_parallel_parts_of_many_uploads_never_pass_the_quota(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url, "--quota", "1000000", "--max-open-uploads", "50")
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=60) as c:
        ids = [open_upload(c, auth, f"u{i}") for i in range(12)]

        def one(up: str) -> int:
            with httpx.Client(base_url=srv.url + API, timeout=60) as own:
                return put(own, auth, up, 0, os.urandom(300_000)).status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(one, ids))
        assert sorted(set(codes)) == [200, 413], codes
        assert codes.count(200) == 3  # 3 x 300,000 fit in 1,000,000; a fourth would not
        held = sum(c.get(f"/files/uploads/{u}", headers=auth).json()["received"] for u in ids)
        assert held == 900_000


def test_open_uploads_per_account_are_capped(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url, "--max-open-uploads", "3")
    auth, other = account(srv.url), account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        ids = [open_upload(c, auth, f"n{i}") for i in range(3)]
        r = c.post("/files/uploads", params={"file_name": "n3"}, headers=auth)
        assert r.status_code == 429 and r.json()["code"] == "too_many_uploads", r.text
        assert "Retry-After" in r.headers
        open_upload(c, other, "theirs")  # the cap is per account
        assert c.delete(f"/files/uploads/{ids[0]}", headers=auth).status_code == 204
        open_upload(c, auth, "n3")


def test_idle_uploads_expire_after_the_idle_timeout(
    launch: Callable[..., Srv], db_url: str | None, tmp_path: Path
) -> None:
    clock = tmp_path / "clock"
    now = time.time()
    clock.write_text(str(now))
    srv = launch(db_url, "--upload-idle-timeout", "600", env={"LIVEDATA_TESTONLY_CLOCK_FILE": str(clock)})
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        idle = open_upload(c, auth, "idle")
        busy = open_upload(c, auth, "busy")
        assert put(c, auth, idle, 0, b"x" * 1000).status_code == 200
        opened = c.get(f"/files/uploads/{busy}", headers=auth).json()
        assert opened["expires_at"] == pytest.approx(now + 600, abs=5)
        clock.write_text(str(now + 400))
        assert put(c, auth, busy, 0, b"y" * 1000).status_code == 200  # activity moves its deadline
        clock.write_text(str(now + 700))
        open_upload(c, auth, "later")  # expiry runs here too
        assert c.get(f"/files/uploads/{idle}", headers=auth).status_code == 404
        assert not (srv.home / "server" / "uploads" / f"{idle}.part").exists()
        kept = c.get(f"/files/uploads/{busy}", headers=auth)
        assert kept.status_code == 200 and kept.json()["received"] == 1000


# -- Low 12: parallel parts and commits ----------------------------------------------------------


def _slow(data: bytes, pieces: int = 20, pause: float = 0.02) -> Iterator[bytes]:
    step = -(-len(data) // pieces)
    for i in range(0, len(data), step):
        yield data[i : i + step]
        time.sleep(pause)


def test_parallel_parts_at_one_offset_one_wins_and_the_upload_completes(
    launch: Callable[..., Srv], db_url: str | None
) -> None:
    srv = launch(db_url)
    auth = account(srv.url)
    size = 256 * 1024
    bodies = [bytes([i]) * size for i in range(16)]
    with httpx.Client(base_url=srv.url + API, timeout=60) as c:
        up = open_upload(c, auth, "raced", size=size)
        start = threading.Barrier(len(bodies))

        def one(body: bytes) -> int:
            with httpx.Client(base_url=srv.url + API, timeout=60) as own:
                start.wait()
                r = own.put(
                    f"/files/uploads/{up}", content=_slow(body),
                    headers={**auth, "Content-Range": f"bytes 0-{size - 1}/{size}", "Content-Length": str(size)},
                )
                return r.status_code

        with ThreadPoolExecutor(len(bodies)) as pool:
            codes = list(pool.map(one, bodies))
        assert codes.count(200) == 1, codes
        assert set(codes) == {200, 409}, codes
        made = c.post(f"/files/uploads/{up}/complete", headers=auth)
        assert made.status_code == 201, made.text
        back = c.get(f"/files/{made.json()['id']}/download", headers=auth).content
        assert back == bodies[codes.index(200)]


def test_parallel_commits_make_one_file(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url)
    auth = account(srv.url)
    data = os.urandom(3 * 1024 * 1024)
    with httpx.Client(base_url=srv.url + API, timeout=60) as c:
        up = open_upload(c, auth, "once")
        assert put(c, auth, up, 0, data, str(len(data))).status_code == 200
        start = threading.Barrier(10)

        def one(_: int) -> int:
            with httpx.Client(base_url=srv.url + API, timeout=60) as own:
                start.wait()
                return own.post(f"/files/uploads/{up}/complete", headers=auth).status_code

        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(one, range(10)))
        assert codes.count(201) == 1, codes
        assert set(codes) <= {201, 404, 409}, codes
        listed = c.get("/files", params={"name": "once"}, headers=auth).json()
        assert listed["total"] == 1
        storage = c.get("/files", headers=auth).json()
        assert sum(f["size"] for f in storage["items"]) == len(data)
        assert c.get(f"/files/{listed['items'][0]['id']}/download", headers=auth).content == data


# -- Low 13: a killed server's leftovers; stalled clients -------------------------------------------


def test_a_killed_servers_leftovers_go_at_the_next_start(launch: Callable[..., Srv], tmp_path: Path) -> None:
    home = tmp_path / "srv"
    srv = launch(None, home=home)
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        live = open_upload(c, auth, "live")
        assert put(c, auth, live, 0, b"L" * 5000).status_code == 200
    # A plain upload in flight when the server dies leaves its half-written blob in blobs/tmp.
    sock = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
    sock.sendall(
        b"POST /api/v1/files?file_name=cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
        + f"Authorization: {auth['Authorization']}\r\n\r\n".encode()
        + b"z" * 2_000_000
    )
    tmp = home / "server" / "blobs" / "tmp"
    deadline = time.time() + 20
    while time.time() < deadline and not [p for p in tmp.glob("*") if p.stat().st_size > 0]:
        time.sleep(0.1)
    assert [p for p in tmp.glob("*") if p.stat().st_size > 0], "no half-written blob to leave behind"
    os.kill(srv.proc.proc.pid, signal.SIGKILL)
    srv.proc.proc.wait()
    sock.close()
    orphan = home / "server" / "uploads" / f"{secrets.token_hex(16)}.part"
    orphan.write_bytes(b"o" * 100)
    assert list(tmp.glob("*")) and orphan.exists()

    again = launch(None, home=home)
    assert list(tmp.glob("*")) == []
    assert not orphan.exists()
    assert (home / "server" / "uploads" / f"{live}.part").stat().st_size == 5000  # a live upload keeps its spool
    with httpx.Client(base_url=again.url + API, timeout=30) as c:
        assert c.get(f"/files/uploads/{live}", headers=auth).json()["received"] == 5000
        assert put(c, auth, live, 5000, b"M" * 10).status_code == 200
        made = c.post(f"/files/uploads/{live}/complete", headers=auth)
        assert made.status_code == 201, made.text
        assert c.get(f"/files/{made.json()['id']}/download", headers=auth).content == b"L" * 5000 + b"M" * 10
    assert "store_tmp_removed" in again.proc.log() and "orphan_spools_removed" in again.proc.log()


def _closed_within(sock: socket.socket, bound: float) -> bool:
    """True when the server closes the connection within ``bound`` seconds (whatever it answers first)."""
    sock.settimeout(bound)
    end = time.monotonic() + bound
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


@pytest.mark.parametrize(
    "half",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers never end
        b"GET /hea",  # the request line never ends
        b"PUT /api/v1/files/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",  # the body stalls
    ],
)
def test_a_stalled_half_request_is_disconnected(launch: Callable[..., Srv], half: bytes) -> None:
    srv = launch(None, "--header-timeout", "2", "--body-timeout", "2")
    sock = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
    try:
        sock.sendall(half)
        assert _closed_within(sock, 15)
    finally:
        sock.close()
    # The server is well, and a client that sends in time is served on a kept-alive connection.
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        time.sleep(1)
        assert c.get("/healthz").status_code == 200


def test_a_stalled_part_keeps_what_arrived(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url, "--body-timeout", "2")
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        up = open_upload(c, auth, "stall")
    sock = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
    try:
        sock.sendall(
            f"PUT /api/v1/files/uploads/{up} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            f"Content-Range: bytes 0-99999/100000\r\nAuthorization: {auth['Authorization']}\r\n\r\n".encode()
            + b"s" * 40_000
        )
        assert _closed_within(sock, 15)
    finally:
        sock.close()
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        deadline = time.time() + 10
        while c.get(f"/files/uploads/{up}", headers=auth).json()["received"] != 40_000 and time.time() < deadline:
            time.sleep(0.1)
        assert c.get(f"/files/uploads/{up}", headers=auth).json()["received"] == 40_000
        assert put(c, auth, up, 40_000, b"t" * 60_000, "100000").status_code == 200  # no claim left behind


def test_a_slow_but_steady_body_is_not_cut_off(launch: Callable[..., Srv]) -> None:
    srv = launch(None, "--body-timeout", "2")
    auth = account(srv.url)

    def drip() -> Iterator[bytes]:
        for _ in range(5):  # 5 s in all, never 2 s without a byte
            yield b"d" * 1000
            time.sleep(1)

    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        r = c.post("/files", params={"file_name": "drip"}, content=drip(), headers={**auth, "Content-Length": "5000"})
        assert r.status_code == 201, r.text
        assert r.json()["size"] == 5000


# -- Low 14: nothing of a deleted account in the SQLite files ------------------------------------------


def test_a_deleted_account_leaves_nothing_in_the_sqlite_files(launch: Callable[..., Srv]) -> None:
    srv = launch(None)
    marker = secrets.token_hex(8)
    email = f"wal-{marker}@example.com"
    auth = account(srv.url, email)
    name = f"secret-name-{marker}"
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        assert c.post("/files", params={"file_name": name}, content=b"x" * 100, headers=auth).status_code == 201
        up = open_upload(c, auth, f"{name}-partial")
        assert put(c, auth, up, 0, b"y" * 100).status_code == 200
        base = srv.home / "server" / "server.sqlite"
        files = [base, base.with_name("server.sqlite-wal")]
        assert any(marker.encode() in p.read_bytes() for p in files if p.exists())
        r = c.post("/users/me/delete", json={"password": PASSWORD}, headers=auth)
        assert r.status_code == 200, r.text
    # The server still runs (its connections stay open): the files are read as they are now.
    for p in [*files, base.with_name("server.sqlite-shm")]:
        if p.exists():
            data = p.read_bytes()
            assert marker.encode() not in data, p.name
            assert email.encode() not in data, p.name


# -- the benchmark's option: read records in batches ------------------------------------------------


def test_batched_read_records_all_reach_the_audit_log(launch: Callable[..., Srv]) -> None:
    import sqlite3

    srv = launch(None, "--audit-batch-ms", "60000")  # nothing flushes by time within this test
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        fid = c.post("/files", params={"file_name": "r"}, content=b"r", headers=auth).json()["id"]
        for _ in range(7):
            assert c.get(f"/files/{fid}", headers=auth).status_code == 200
    srv.proc.stop()  # a clean stop writes what waits
    db = sqlite3.connect(srv.home / "server" / "server.sqlite")
    try:
        reads = db.execute("SELECT count(*) FROM audit_logs WHERE action = 'file.read' AND object_id = ?", (fid,))
        assert reads.fetchone()[0] == 7
    finally:
        db.close()


_number = st.one_of(
    st.integers(0, 2_000), st.integers(2**62 - 2, 2**64), st.just(10**19 - 1), st.just(10**30)
).map(str)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_any_content_range_is_answered_without_a_server_error(launch: Callable[..., Srv], db_url: str | None) -> None:
    srv = launch(db_url)
    auth = account(srv.url)
    with httpx.Client(base_url=srv.url + API, timeout=30) as c:
        up = open_upload(c, auth, "ranges")

        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            header=st.one_of(
                st.builds(lambda a, b, t: f"bytes {a}-{b}/{t}", _number, _number, st.one_of(_number, st.just("*"))),
                st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t),
            ),
            body=st.binary(max_size=64),
        )
        def one(header: str, body: bytes) -> None:
            try:
                with httpx.Client(base_url=srv.url + API, timeout=30) as own:
                    r = own.put(f"/files/uploads/{up}", content=body, headers={**auth, "Content-Range": header})
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                return  # not a header httpx can send
            assert r.status_code in (200, 400, 409, 413), (header, r.status_code, r.text)
            if r.headers["content-type"] != "application/json":  # the HTTP parser's own answer
                assert r.status_code == 400 and not header.isprintable(), (header, r.status_code, r.text)

        one()
        received = c.get(f"/files/uploads/{up}", headers=auth).json()["received"]
        assert received >= 0
