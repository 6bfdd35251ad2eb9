"""A real PostgreSQL 15 for the server tests, started per test session on a free port.

PostgreSQL refuses to run as root, and CI runs as root: then initdb and
pg_ctl run as the ``postgres`` user (``runuser``) in a temporary folder
handed to that user.  Each test gets its own database in the cluster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINDIR = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "ld_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start(log_to: Path | None = None) -> PgServer:
    if not (BINDIR / "initdb").exists():
        raise RuntimeError("PostgreSQL 15 is missing: run 'make system-deps' (Debian package postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="livedata-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    os.chmod(folder, 0o700)
    data = folder / "data"
    run = _as_postgres()
    subprocess.run(
        [*run, str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [*run, str(BINDIR / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    return PgServer(port=port, folder=folder)


def stop(pg: PgServer) -> None:
    subprocess.run(
        [*_as_postgres(), str(BINDIR / "pg_ctl"), "-D", str(pg.folder / "data"), "-m", "immediate", "-w", "stop"],
        capture_output=True,
    )
    shutil.rmtree(pg.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    pg = start()
    try:
        yield pg
    finally:
        stop(pg)


# -- the API under test -------------------------------------------------------

PASSWORD = "a long test password"


class ApiUser:
    """An account on the server under test, with its tokens and a client that sends them."""

    def __init__(self, client: object, email: str, tokens: dict[str, object]) -> None:
        self.client = client
        self.email = email
        self.tokens = tokens

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def request(self, method: str, url: str, **kw: object) -> object:
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        return self.client.request(method, url, headers=headers, **kw)  # type: ignore[attr-defined]

    def get(self, url: str, **kw: object) -> object:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: object) -> object:
        return self.request("POST", url, **kw)

    def patch(self, url: str, **kw: object) -> object:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: object) -> object:
        return self.request("DELETE", url, **kw)

    def upload(
        self, data: bytes, name: str = "f.bin", headers: dict[str, str] | None = None, **params: object
    ) -> dict[str, object]:
        r = self.post("/api/v1/files", params={"file_name": name, **params}, content=data, headers=headers or {})
        assert r.status_code == 201, r.text  # type: ignore[attr-defined]
        return r.json()  # type: ignore[attr-defined,no-any-return]


def new_user(client: object, email: str | None = None, password: str = PASSWORD) -> ApiUser:
    email = email or f"u{secrets.token_hex(4)}@example.com"
    r = client.post(  # type: ignore[attr-defined]
        "/api/v1/auth/register", json={"email": email, "password": password, "first_name": "Ada", "last_name": "L"}
    )
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return ApiUser(client, email, r.json())


# -- a real `livedata server` process ---------------------------------------------


class ServerProcess:
    """``livedata server`` as a child process; its stderr (the JSON log) is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import sys
        import threading

        from conftest import livedata_exe

        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*livedata_exe(), "server", "--port", "0", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines))
        del sys

    def _read(self) -> None:
        import json

        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if not self.url and '"listening"' in line:
                self.url = json.loads(line)["url"]
                self._ready.set()
        self._ready.set()

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Mailbox:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[str] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(envelope.content.decode("utf-8", "replace"))  # type: ignore[attr-defined]
        return "250 OK"

    def stop(self) -> None:
        self.controller.stop()
