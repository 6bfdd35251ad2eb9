"""The server's deployment options: the upload scan hook, Redis-shared rate limits, an S3 blob store."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import s3server
from fastapi.testclient import TestClient
from s3server import AWS_ENV, all_keys

from conftest import Cli, assert_one_line_error
from livedata_cli.crypto.container import MAGIC
from livedata_cli.server import db
from livedata_cli.server.app import create_app
from livedata_cli.server.config import RateLimits, ServerConfig
from pgserver import PASSWORD, ServerProcess, free_port, new_user

moto_url, s3, bucket = s3server.moto_url, s3server.s3, s3server.bucket

LOOSE = RateLimits(*(["1000/minute"] * 8))
# The EICAR test file, in two pieces so that this source file itself is not flagged.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

# A small scanner with the exit-status contract of clamscan/clamdscan: 0 clean, 1 found, 2 error.
SCANNER = """\
import hashlib, sys, time
args = sys.argv[1:]
if args[:1] == ["--early"]:
    sys.stdin.buffer.read(10)  # has seen enough: closes its stdin with the upload still arriving
    sys.exit(0)
data = sys.stdin.buffer.read()
if args[:1] == ["--record"]:
    with open(args[1], "w") as f:
        f.write(hashlib.sha256(data).hexdigest())
if b"HANG" in data:
    time.sleep(60)
if b"BROKEN" in data:
    print("scanner: cannot load its database")
    sys.exit(2)
if EICAR in data:
    print("stdin: Eicar-Test-Signature FOUND")
    sys.exit(1)
print("stdin: OK")
"""


@pytest.fixture
def scanner(tmp_path: Path) -> Path:
    path = tmp_path / "scanner.py"
    path.write_text(f"EICAR = {EICAR!r}\n" + SCANNER)
    return path


def scan_command(scanner: Path, *args: str) -> str:
    return shlex.join([sys.executable, str(scanner), *args])


def make_config(tmp_path: Path, **kw: Any) -> ServerConfig:
    base = tmp_path / "server"
    return ServerConfig(
        db_url=f"sqlite:///{base / 'db.sqlite'}",
        store_url=str(base / "blobs"),
        keys_path=str(base / "keys.json"),
        weaken_kdf=True,
        rate_limits=LOOSE,
        **kw,
    ).resolved()


def client(config: ServerConfig) -> TestClient:
    db.Database(config.db_url).migrate()
    return TestClient(create_app(config))


def blobs(config: ServerConfig) -> list[Path]:
    data = Path(config.store_url) / "data"
    return sorted(p for p in data.rglob("*") if p.is_file()) if data.exists() else []


def assert_nothing_stored(user: Any, config: ServerConfig, files_before: int = 0) -> None:
    assert user.get("/api/v1/files").json()["total"] == files_before
    assert len(blobs(config)) == files_before


# -- the scan hook ------------------------------------------------------------------

def test_scan_hook_verdicts(tmp_path: Path, scanner: Path) -> None:
    record = tmp_path / "seen.sha256"
    config = make_config(tmp_path, scan_command=scan_command(scanner, "--record", str(record)))
    with client(config) as c:
        user = new_user(c)
        # Clean: stored, and the scanner saw exactly the uploaded bytes, streamed over several chunks.
        data = os.urandom(1024 * 1024 + 5)

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        r = user.post("/api/v1/files", params={"file_name": "clean.bin"}, content=chunks())
        assert r.status_code == 201, r.text
        assert record.read_text() == hashlib.sha256(data).hexdigest()
        assert user.get(f"/api/v1/files/{r.json()['id']}/download").content == data
        used = user.get("/api/v1/users/me/storage").json()["used_bytes"]

        # Infected, with the test string across two chunks: 422, nothing stored, quota untouched.
        bad = os.urandom(100_000) + EICAR + os.urandom(100_000)
        split = 100_000 + 30
        r = user.post("/api/v1/files", params={"file_name": "eicar.com"}, content=iter([bad[:split], bad[split:]]))
        assert r.status_code == 422
        assert r.json()["code"] == "infected"
        assert "Eicar-Test-Signature FOUND" in r.json()["detail"] and "nothing was stored" in r.json()["detail"]
        assert_nothing_stored(user, config, files_before=1)
        assert user.get("/api/v1/users/me/storage").json()["used_bytes"] == used
        actions = [(e["action"], e["status"]) for e in user.get("/api/v1/users/me/audit-logs").json()["items"]]
        assert ("file.upload", "infected") in actions

        # The scanner fails (exit 2): 503, nothing stored.
        r = user.post("/api/v1/files", params={"file_name": "b.bin"}, content=b"BROKEN")
        assert r.status_code == 503 and r.json()["code"] == "scan_failed"
        assert_nothing_stored(user, config, files_before=1)
        # An empty upload is scanned too (stdin closed at once).
        assert user.post("/api/v1/files", params={"file_name": "empty"}, content=b"").status_code == 201


def test_scan_hook_timeout_and_early_verdict(tmp_path: Path, scanner: Path) -> None:
    config = make_config(tmp_path / "a", scan_command=scan_command(scanner), scan_timeout=1.0)
    with client(config) as c:
        user = new_user(c)
        r = user.post("/api/v1/files", params={"file_name": "h.bin"}, content=b"HANG")
        assert r.status_code == 503 and r.json()["code"] == "scan_failed"
        assert_nothing_stored(user, config)
    # A scanner that stops reading and exits 0 has given its verdict: the rest of the body is still stored.
    config = make_config(tmp_path / "b", scan_command=scan_command(scanner, "--early"))
    with client(config) as c:
        user = new_user(c)
        data = os.urandom(2 * 1024 * 1024)
        fid = user.upload(data, "big.bin")["id"]
        assert user.get(f"/api/v1/files/{fid}/download").content == data


def test_scan_command_on_the_real_server(start: Any, cli: Cli, scanner: Path) -> None:
    server = start("--scan-command", scan_command(scanner))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        user = new_user(c)
        assert user.post("/api/v1/files", params={"file_name": "ok.txt"}, content=b"hello").status_code == 201
        r = user.post("/api/v1/files", params={"file_name": "eicar.com"}, content=EICAR)
        assert r.status_code == 422 and r.json()["code"] == "infected"
        assert user.get("/api/v1/files").json()["total"] == 1
    server.stop()
    assert "upload_infected" in server.log()
    assert_one_line_error(cli("server", "--port", "0", "--scan-command", "/nonexistent/clamscan -"), 2)
    assert_one_line_error(cli("server", "--port", "0", "--scan-command", "clamscan 'unbalanced"), 2)
    assert_one_line_error(cli("server", "--port", "0", "--scan-command", ""), 2)


# -- real server processes ------------------------------------------------------------

@pytest.fixture
def start(livedata_env: dict[str, str]) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        full.update(livedata_env)
        full.update(env or {})
        server = ServerProcess(list(args), full)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# -- rate limits shared through Redis -----------------------------------------------

class Redis:
    """A real redis-server on a free 127.0.0.1 port, in memory only."""

    def __init__(self, folder: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is missing: run 'make system-deps' (Debian package redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = Redis(folder)
    yield server
    server.stop()


def _login(c: httpx.Client, email: str) -> httpx.Response:
    return c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})


def test_redis_shares_login_limits_between_servers(start: Any, redis: Redis) -> None:
    first = start("--redis", redis.url)
    second = start("--redis", redis.url)  # same home: same database and keys, another process
    alone = start()  # counts in its own memory
    budget = int(RateLimits().login.split("/")[0])
    with (
        httpx.Client(base_url=first.url, timeout=30) as a,
        httpx.Client(base_url=second.url, timeout=30) as b,
        httpx.Client(base_url=alone.url, timeout=30) as m,
    ):
        assert a.post("/api/v1/auth/register", json={"email": "rl@example.com", "password": PASSWORD}).status_code == 201
        for _ in range(budget):
            assert _login(a, "rl@example.com").status_code == 200
        r = _login(b, "rl@example.com")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert _login(m, "rl@example.com").status_code == 200  # without Redis, nothing is shared
        assert b.get("/readyz").json()["checks"]["redis"] == "ok"

        # Redis gone: the guarded actions are refused (503, not let through, not a 500).
        redis.stop()
        r = _login(b, "other@example.com")
        assert r.status_code == 503 and r.json()["code"] == "unavailable" and "retry-after" in r.headers
        ready = b.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "unreachable"
        assert b.get("/healthz").status_code == 200


def test_redis_option_errors(cli: Cli) -> None:
    r = cli("server", "--port", "0", "--redis", f"redis://user:s3cretpw@127.0.0.1:{free_port()}/0")
    assert_one_line_error(r, 6)
    assert "s3cretpw" not in r.stderr and "Redis" in r.stderr
    assert_one_line_error(cli("server", "--port", "0", "--redis", "memcached://127.0.0.1:11211"), 2)


# -- blobs in S3 ----------------------------------------------------------------------

def test_server_on_an_s3_blob_store(start: Any, cli: Cli, moto_url: str, s3: Any, bucket: str) -> None:
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_url, "LIVEDATA_S3_PART_SIZE": str(5 * 1024 * 1024)}
    r = cli("server", "--port", "0", "--store", f"s3://{bucket}-missing/blobs", env=env)
    assert_one_line_error(r, 3)
    assert f"{bucket}-missing" in r.stderr
    server = start("--store", f"s3://{bucket}/blobs", env=env)
    marker = b"plaintext marker that must never reach the bucket "
    small = marker * 3
    big = marker + os.urandom(11 * 1024 * 1024) + marker  # several multipart parts
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/readyz").json()["checks"]["store"] == "ok"
        user = new_user(c)
        ids = [user.upload(small, "small.txt")["id"], user.upload(big, "big.bin")["id"]]
        assert user.get(f"/api/v1/files/{ids[0]}/download").content == small
        with c.stream("GET", f"/api/v1/files/{ids[1]}/download", headers=user.headers) as resp:
            assert resp.status_code == 200
            assert b"".join(resp.iter_bytes()) == big
        part = user.get(f"/api/v1/files/{ids[1]}/download", headers={"Range": "bytes=6000000-6000099"})
        assert part.status_code == 206 and part.content == big[6_000_000:6_000_100]

        keys = all_keys(s3, bucket)
        assert len(keys) == 2 and all(re.fullmatch(r"blobs/data/[0-9a-f]{32}", k) for k in keys), keys
        for key in keys:
            blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert blob[:4] == MAGIC and marker not in blob
        sizes = sorted(s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys)
        assert sizes[0] > len(small) and sizes[1] > len(big)  # header and tags: a container, not the bytes

        assert user.delete(f"/api/v1/files/{ids[0]}", params={"purge": "true"}).status_code == 204
        assert len(all_keys(s3, bucket)) == 1
        # An upload cut short after a multipart upload began leaves nothing in the bucket.
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                b"POST /api/v1/files?file_name=cut HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: {user.headers['Authorization']}\r\nContent-Length: {20 * 1024 * 1024}\r\n\r\n".encode()
                + os.urandom(7 * 1024 * 1024)
            )
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(30)
            while conn.recv(65536):
                pass
        assert user.get("/api/v1/files").json()["total"] == 1
    assert len(all_keys(s3, bucket)) == 1
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
