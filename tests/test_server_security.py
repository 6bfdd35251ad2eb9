"""The findings of the server's penetration test, replayed against a real ``livedata server`` process.

Each test here failed on the server before its fix: the seed's API paths,
unbounded request bodies, reset tokens that outlived a password change,
MFA changes with a stolen access token alone, MFA guesses spread over many
challenges, public metrics labelled by raw path, and a ``--trust-proxy``
that trusted any peer.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Cli, assert_one_line_error
from pgserver import PASSWORD, Mailbox, PgServer, ServerProcess, postgres  # noqa: F401

API = "/api/v1"

# The seed's API table: the 28 endpoints of its auth, files, shares, conversions and users surface,
# exactly as a client written against the seed calls them.
SEED_TABLE: list[tuple[str, str]] = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh-token"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/mfa/setup"),
    ("POST", "/api/v1/auth/mfa/verify"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("POST", "/api/v1/files/upload"),
    ("GET", "/api/v1/files"),
    ("GET", "/api/v1/files/search"),
    ("GET", "/api/v1/files/:fileId"),
    ("PUT", "/api/v1/files/:fileId"),
    ("DELETE", "/api/v1/files/:fileId"),
    ("GET", "/api/v1/files/:fileId/download"),
    ("POST", "/api/v1/files/:fileId/tag"),
    ("POST", "/api/v1/shares"),
    ("GET", "/api/v1/shares/:shareId"),
    ("DELETE", "/api/v1/shares/:shareId"),
    ("GET", "/api/v1/shares/:shareId/download"),
    ("POST", "/api/v1/conversions"),
    ("GET", "/api/v1/conversions/:jobId"),
    ("GET", "/api/v1/conversions/formats"),
    ("GET", "/api/v1/users/profile"),
    ("PUT", "/api/v1/users/profile"),
    ("GET", "/api/v1/users/storage"),
    ("POST", "/api/v1/users/password-change"),
    ("GET", "/api/v1/users/audit-logs"),
]
# The ones a caller without an account may reach (a share link holder needs no token).
SEED_PUBLIC = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh-token"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("GET", "/api/v1/shares/:shareId/download"),
    ("GET", "/api/v1/conversions/formats"),
}


def _concrete(path: str) -> str:
    return re.sub(r":\w+", "0123456789abcdef0123456789abcdef", path)


def _template(path: str) -> str:
    return re.sub(r"(:\w+|\{\w+\})", "{}", path)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def start(livedata_env: dict[str, str]) -> Iterator[Any]:
    """A factory of real server processes (SQLite and a blob folder unless told otherwise)."""
    started: list[ServerProcess] = []

    def factory(*args: str, weak_kdf: bool = True) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env.update(livedata_env)
        if not weak_kdf:
            env.pop("LIVEDATA_TESTONLY_WEAKEN_KDF", None)
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def _account(c: httpx.Client, email: str | None = None, password: str = PASSWORD) -> dict[str, str]:
    email = email or f"u{os.urandom(4).hex()}@example.com"
    r = c.post(f"{API}/auth/register", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    r = c.post(f"{API}/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}", "email": email}


def _auth(h: dict[str, str]) -> dict[str, str]:
    return {"Authorization": h["Authorization"]}


# -- the seed's API, path for path ---------------------------------------------------------------


def test_seed_table_is_in_the_openapi_document(start: Any) -> None:
    server = start()
    spec = httpx.get(server.url + f"{API}/openapi.json", timeout=30).json()
    served = {(m.upper(), _template(p)) for p, ops in spec["paths"].items() for m in ops}
    missing = [(m, p) for m, p in SEED_TABLE if (m, _template(p)) not in served]
    assert missing == []
    assert len(SEED_TABLE) == 28
    # the current paths stay, as aliases of the same operations
    for m, p in [("PATCH", "/api/v1/files/{}"), ("POST", "/api/v1/files/{}/tags"), ("GET", "/api/v1/users/me"),
                 ("POST", "/api/v1/users/me/password"), ("POST", "/api/v1/auth/password-reset/request")]:
        assert (m, p) in served
    upload = spec["paths"]["/api/v1/files/upload"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload and "application/octet-stream" in upload


def test_seed_table_without_a_token_is_401_never_404(start: Any) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for method, path in SEED_TABLE:
            r = c.request(method, _concrete(path), json={} if method in ("POST", "PUT") else None)
            if (method, path) in SEED_PUBLIC:
                assert r.status_code != 401, (method, path, r.status_code)
                if "shares" not in path:  # a share id that does not exist is a plain 404
                    assert r.status_code != 404, (method, path)
            else:
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.json()["code"] == "unauthorized"


def test_seed_table_round_trip_against_a_running_server(start: Any, mailbox: Mailbox) -> None:
    """A client written against the seed's table, every endpoint once, each doing what the seed's did."""
    server = start("--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox.port))
    hit: set[tuple[str, str]] = set()

    def call(c: httpx.Client, method: str, path: str, expect: int, **kw: Any) -> httpx.Response:
        concrete = path
        for name, value in kw.pop("ids", {}).items():
            concrete = concrete.replace(f":{name}", value)
        r = c.request(method, concrete, **kw)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        hit.add((method, path))
        return r

    email_addr = "grace@example.com"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        call(c, "POST", "/api/v1/auth/register", 201,
             json={"email": email_addr, "password": PASSWORD, "first_name": "Grace", "last_name": "H"})
        tokens = call(c, "POST", "/api/v1/auth/login", 200, json={"email": email_addr, "password": PASSWORD}).json()
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        # multipart, as multer took it: the content in a 'file' part, the rest as fields
        pdf = b"%PDF-1.4 " + os.urandom(300_000)
        r = call(c, "POST", "/api/v1/files/upload", 201, headers=h,
                 files={"file": ("report.pdf", pdf, "application/pdf")}, data={"description": "Q3", "tags": "work,q3"})
        f = r.json()
        assert (f["file_name"], f["content_type"], f["size"], f["description"], f["tags"]) == (
            "report.pdf", "application/pdf", len(pdf), "Q3", ["q3", "work"])
        fid = f["id"]
        # the raw body the CLI sends, on the same path
        raw = c.post("/api/v1/files/upload", params={"file_name": "raw.bin"}, content=b"raw bytes", headers=h)
        assert raw.status_code == 201 and raw.json()["size"] == 9
        assert fid in [x["id"] for x in call(c, "GET", "/api/v1/files", 200, headers=h).json()["items"]]
        call(c, "GET", "/api/v1/files/search", 200, headers=h, params={"q": "report"})
        assert call(c, "GET", "/api/v1/files/:fileId", 200, headers=h, ids={"fileId": fid}).json()["size"] == len(pdf)
        r = call(c, "PUT", "/api/v1/files/:fileId", 200, headers=h, ids={"fileId": fid},
                 json={"description": "Q3 final", "metadata": {"pages": 3}})
        assert r.json()["description"] == "Q3 final" and r.json()["metadata"] == {"pages": 3}
        r = call(c, "POST", "/api/v1/files/:fileId/tag", 200, headers=h, ids={"fileId": fid}, json={"tags": ["final"]})
        assert r.json()["tags"] == ["final", "q3", "work"]
        r = call(c, "GET", "/api/v1/files/:fileId/download", 200, headers=h, ids={"fileId": fid})
        assert r.content == pdf
        share = call(c, "POST", "/api/v1/shares", 201, headers=h, json={"file_id": fid, "max_downloads": 2}).json()
        assert call(c, "GET", "/api/v1/shares/:shareId", 200, headers=h, ids={"shareId": share["id"]}).json()[
            "file_id"] == fid
        assert call(c, "GET", "/api/v1/shares/:shareId/download", 200, ids={"shareId": share["id"]}).content == pdf
        call(c, "DELETE", "/api/v1/shares/:shareId", 204, headers=h, ids={"shareId": share["id"]})
        assert "pdf" in call(c, "GET", "/api/v1/conversions/formats", 200).json()["formats"]["document"]
        job = call(c, "POST", "/api/v1/conversions", 201, headers=h, json={"file_id": fid, "target_format": "txt"}).json()
        assert call(c, "GET", "/api/v1/conversions/:jobId", 200, headers=h, ids={"jobId": job["id"]}).json()[
            "status"] == "queued"
        assert call(c, "GET", "/api/v1/users/profile", 200, headers=h).json()["email"] == email_addr
        assert call(c, "PUT", "/api/v1/users/profile", 200, headers=h, json={"first_name": "G"}).json()[
            "first_name"] == "G"
        storage = call(c, "GET", "/api/v1/users/storage", 200, headers=h).json()
        assert storage["used_bytes"] == len(pdf) + 9 and storage["files"] == 2
        actions = [e["action"] for e in call(c, "GET", "/api/v1/users/audit-logs", 200, headers=h).json()["items"]]
        assert "file.upload" in actions and "file.tag" in actions
        password2 = "a second long password"
        call(c, "POST", "/api/v1/users/password-change", 204, headers=h,
             json={"current_password": PASSWORD, "new_password": password2})
        setup = call(c, "POST", "/api/v1/auth/mfa/setup", 200, headers=h, json={"password": password2}).json()
        codes = call(c, "POST", "/api/v1/auth/mfa/verify", 200, headers=h,
                     json={"code": pyotp.TOTP(setup["secret"]).now(), "password": password2}).json()
        assert codes["mfa_enabled"] is True
        call(c, "DELETE", "/api/v1/files/:fileId", 204, headers=h, ids={"fileId": fid})
        fresh = call(c, "POST", "/api/v1/auth/refresh-token", 200, json={"refresh_token": tokens["refresh_token"]})
        call(c, "POST", "/api/v1/auth/logout", 204, headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
        call(c, "POST", "/api/v1/auth/password-reset", 202, json={"email": email_addr})
        token = _mail_token(mailbox, 1)
        call(c, "POST", "/api/v1/auth/password-reset/confirm", 204,
             json={"token": token, "new_password": "a third long password"})
    assert hit == set(SEED_TABLE)


def _form(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_upload_refusals_store_nothing(start: Any) -> None:
    server = start()
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        cases = [
            (_form("xyz", ("other", "a.txt", b"x")), 400, "unexpected_field"),
            (_form("xyz", ("file", "a", b"1"), ("file", "b", b"2")), 400, "unexpected_field"),
            (_form("xyz", ("description", None, b"no file")), 400, "missing_file"),
            (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc', 400, "invalid_form"),
            (_form("xyz", ("file", "a", b"x" * 10), ("description", None, b"d" * 70_000)), 413, "body_too_large"),
            (_form("xyz", ("file", "a", b"x" * 10), ("file_name", None, b"")), 422, "invalid_field"),
        ]
        for body, status, code in cases:
            r = c.post(f"{API}/files/upload", headers={**h, **multipart}, content=body)
            assert (r.status_code, r.json().get("code")) == (status, code), (body[:80], r.text)
        storage = c.get(f"{API}/users/storage", headers=h).json()
        assert storage["used_bytes"] == 0 and storage["files"] == 0
        r = c.post(f"{API}/files/upload", headers={**h, **multipart},
                   content=_form("xyz", ("file_name", None, "café.txt".encode()), ("file", "ignored.txt", b"hello")))
        assert r.status_code == 201 and r.json()["file_name"] == "café.txt"


# -- High 1: memory exhaustion without an account ------------------------------------------------


def _status(proc_pid: int, field: str) -> int:
    """A /proc/PID/status figure in KiB (VmRSS: now; VmHWM: the peak so far)."""
    with open(f"/proc/{proc_pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def _flood(url: str, path: str, size: int, *, chunked: bool) -> int | None:
    """POST ``size`` bytes of one JSON string, as an attacker would; the status line, if one came."""
    import select

    parts = urlsplit(url)
    piece = b"a" * (1024 * 1024)
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(head.encode())
        sent = 0
        try:
            while sent < size:
                data = piece[: size - sent]
                s.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                sent += len(data)
                if select.select([s], [], [], 0)[0]:
                    break
            if chunked and sent >= size:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        try:
            first = s.recv(64)
        except OSError:
            return None
    m = re.match(rb"HTTP/1\.1 (\d{3})", first)
    return int(m.group(1)) if m else None


def test_big_bodies_are_refused_at_once_in_bounded_memory(start: Any) -> None:
    server = start()
    pid = server.proc.pid
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        _account(c)  # the routes are warm
    before = _status(pid, "VmRSS")
    statuses: list[int | None] = []
    size = 40 * 1024 * 1024
    targets = [("/api/v1/auth/login", False), ("/api/v1/auth/login", True), ("/api/v1/auth/register", False),
               ("/api/v1/auth/register", True), ("/api/v1/users/me", False), ("/api/v1/auth/refresh-token", True)]
    threads = [
        threading.Thread(target=lambda p=p, ch=ch: statuses.append(_flood(server.url, p, size, chunked=ch)))
        for p, ch in targets
    ]
    health: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not done.is_set():
                t = time.monotonic()
                assert c.get("/healthz").status_code == 200
                health.append(time.monotonic() - t)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    while not health and poller.is_alive():
        time.sleep(0.01)
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    polled = len(health)
    while len(health) < polled + 3 and poller.is_alive():
        time.sleep(0.01)
    done.set()
    poller.join(30)
    peak = _status(pid, "VmHWM")
    after = _status(pid, "VmRSS")
    assert statuses.count(413) == len(targets), statuses
    assert health and max(health) < 2.0, max(health)
    # 6 × 40 MB sent: the server held none of it (the old one grew by 1.5 GiB)
    assert peak - before < 64 * 1024, (before, peak, after)
    assert after - before < 32 * 1024, (before, after)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"email": "a@example.com", "password": NaN}', "invalid_json"),
        (b'{"email": "a@example.com", "password": Infinity}', "invalid_json"),
        (b'1e999', "invalid_json"),  # a number no float holds: infinity
        (b'{"email": "a@example.com", "password": "a long test password", "device_name": -1e400}', "invalid_json"),
        (b'{"email": "\\ud800@example.com", "password": "a long test password"}', "invalid_json"),
        (b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b', "password": "x"}', "too_deep"),
    ],
)
def test_crafted_json_is_a_400_not_a_500(start: Any, body: bytes, code: str) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in ("/api/v1/auth/login", "/api/v1/auth/register"):
            r = c.post(path, content=body, headers={"Content-Type": "application/json"})
            assert (r.status_code, r.json()["code"]) == (400, code), r.text


def test_a_body_that_is_not_text_is_a_422_not_a_500(start: Any) -> None:
    """Bytes that are not UTF-8, sent as text, are refused like any body that is not the route's JSON."""
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        for path, headers in (("/api/v1/auth/login", {}), ("/api/v1/shares", h), ("/api/v1/auth/register", {})):
            for kind in ("text/plain", "application/octet-stream"):
                r = c.post(path, content=b"\xff\xfe\x00{", headers={**headers, "Content-Type": kind})
                assert r.status_code == 422, (path, kind, r.status_code, r.text)
                assert r.json()["detail"], r.text


def test_request_headers_are_bounded_a_431_before_the_server_holds_more(start: Any) -> None:
    """A request line and headers of over 64 KiB are answered 431 and the
    connection closed as soon as the limit passes, however much more the client
    meant to send; headers just under it, and a body after them, are served."""
    server = start()
    parts = urlsplit(server.url)
    before = _status(server.proc.pid, "VmRSS")
    for header in (b"X-Big: " + b"a" * (40 << 20), b"X-Many: b\r\n" * 200_000):
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            with contextlib.suppress(OSError):  # the server closes the connection long before the end
                while sent < len(header):
                    sent += s.send(header[sent : sent + (1 << 20)])
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'"headers_too_large"' in answer
        assert sent < 8 << 20  # refused early: not after the client sent it all
    assert _status(server.proc.pid, "VmHWM") - before < 16 * 1024  # KiB: it held none of it
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        assert c.get("/healthz", headers={"X-Fill": "c" * 60_000}).status_code == 200
        r = c.post(f"{API}/files", params={"file_name": "a"}, content=b"y" * 300_000, headers={**h, "X-Fill": "d" * 60_000})
        assert r.status_code == 201, r.text


def test_content_length_of_thousands_of_digits_is_a_413(start: Any) -> None:
    server = start()
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + b"9" * 4400 + b"\r\n\r\n")
        first = s.recv(64)
    assert first.startswith(b"HTTP/1.1 4"), first


def test_deeply_nested_metadata_is_refused_at_write_and_listings_keep_working(start: Any) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        fid = c.post(f"{API}/files", params={"file_name": "a"}, content=b"x", headers=h).json()["id"]
        deep = '{"k":' * 3000 + '"leaf"' + "}" * 3000
        for method in ("PATCH", "PUT"):
            r = c.request(method, f"{API}/files/{fid}", headers=h, content='{"metadata": ' + deep + "}")
            assert (r.status_code, r.json()["code"]) == (400, "too_deep")
        options = "[" * 3000 + "1" + "]" * 3000
        r = c.post(f"{API}/conversions", headers=h,
                   content=f'{{"file_id": "{fid}", "target_format": "txt", "options": {{"o": {options}}}}}')
        assert (r.status_code, r.json()["code"]) == (400, "too_deep")
        assert c.get(f"{API}/files", headers=h).status_code == 200
        assert c.get(f"{API}/conversions", headers=h).status_code == 200
        # a metadata document that fits is taken, and PUT is PATCH
        r = c.put(f"{API}/files/{fid}", headers=h, json={"metadata": {"a": {"b": [1, 2, {"c": "d"}]}}})
        assert r.status_code == 200 and r.json()["metadata"] == {"a": {"b": [1, 2, {"c": "d"}]}}


# -- Medium 2, 3, 4: reset tokens, re-authentication, MFA guesses ---------------------------------


def _reset_tokens(mailbox: Mailbox) -> list[str]:
    found = []
    for message in list(mailbox.messages):
        text = email.message_from_string(message, policy=email.policy.default).get_content()  # type: ignore[attr-defined]
        m = re.search(r"usable once:\s+(\S+)", text)
        if m:
            found.append(m.group(1))
    return found


def _mail_token(mailbox: Mailbox, n: int) -> str:
    """The n-th password-reset token mailed (1-based), waiting for it a while."""
    deadline = time.monotonic() + 20
    while len(_reset_tokens(mailbox)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return _reset_tokens(mailbox)[n - 1]


def test_reset_tokens_die_on_any_reset_or_password_change(start: Any, mailbox: Mailbox) -> None:
    server = start("--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox.port))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _account(c, "rita@example.com")
        for _ in range(2):
            assert c.post(f"{API}/auth/password-reset", json={"email": "rita@example.com"}).status_code == 202
        first, second = _mail_token(mailbox, 1), _mail_token(mailbox, 2)
        r = c.post(f"{API}/auth/password-reset/confirm", json={"token": first, "new_password": "password number 2"})
        assert r.status_code == 204
        r = c.post(f"{API}/auth/password-reset/confirm", json={"token": second, "new_password": "password number 3"})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_token")
        # a password change ends the outstanding tokens too
        h = _account_login(c, "rita@example.com", "password number 2")
        assert c.post(f"{API}/auth/password-reset/request", json={"email": "rita@example.com"}).status_code == 202
        third = _mail_token(mailbox, 3)
        r = c.post(f"{API}/users/password-change", headers=h,
                   json={"current_password": "password number 2", "new_password": "password number 4"})
        assert r.status_code == 204
        r = c.post(f"{API}/auth/password-reset/confirm", json={"token": third, "new_password": "password number 5"})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_token")
        assert c.post(f"{API}/auth/login", json={"email": "rita@example.com", "password": "password number 4"}).status_code == 200


def _account_login(c: httpx.Client, email_addr: str, password: str) -> dict[str, str]:
    r = c.post(f"{API}/auth/login", json={"email": email_addr, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_a_stolen_access_token_cannot_take_the_account_over(start: Any) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c, "owner@example.com"))
        # MFA setup and verify: the password again (a token alone is not enough)
        assert c.post(f"{API}/auth/mfa/setup", headers=h).status_code == 422
        r = c.post(f"{API}/auth/mfa/setup", headers=h, json={"password": "the thief's guess"})
        assert (r.status_code, r.json()["code"]) == (403, "invalid_credentials")
        secret = c.post(f"{API}/auth/mfa/setup", headers=h, json={"password": PASSWORD}).json()["secret"]
        totp = pyotp.TOTP(secret)
        assert c.post(f"{API}/auth/mfa/verify", headers=h, json={"code": totp.now()}).status_code == 422
        r = c.post(f"{API}/auth/mfa/verify", headers=h, json={"code": totp.now(), "password": "the thief's guess"})
        assert r.status_code == 403
        r = c.post(f"{API}/auth/mfa/verify", headers=h, json={"code": totp.at(time.time() - 30), "password": PASSWORD})
        assert r.status_code == 200
        # with MFA on, the password change needs a code as well (the seed's path and the current one alike)
        for path in ("/users/password-change", "/users/me/password"):
            r = c.post(f"{API}{path}", headers=h, json={"current_password": PASSWORD, "new_password": "new password 1"})
            assert (r.status_code, r.json()["code"]) == (403, "invalid_code")
        r = c.post(f"{API}/users/password-change", headers=h,
                   json={"current_password": PASSWORD, "new_password": "new password 1", "code": totp.now()})
        assert r.status_code == 204
        # disabling MFA: password and a code
        r = c.post(f"{API}/auth/mfa/disable", headers=h, json={"password": "new password 1"})
        assert (r.status_code, r.json()["code"]) == (403, "invalid_code")
        r = c.post(f"{API}/auth/mfa/disable", headers=h,
                   json={"password": "new password 1", "code": totp.at(time.time() + 30)})
        assert r.status_code == 204
        # the re-authentication is counted like a login: a thief guessing passwords runs out
        statuses = [
            c.post(f"{API}/users/password-change", headers=h,
                   json={"current_password": f"guess number {i}", "new_password": "new password 2"}).status_code
            for i in range(12)
        ]
        assert set(statuses) <= {403, 429} and statuses[-1] == 429, statuses


def test_mfa_guesses_are_counted_per_account_across_challenges(start: Any) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c, "mia@example.com"))
        secret = c.post(f"{API}/auth/mfa/setup", headers=h, json={"password": PASSWORD}).json()["secret"]
        totp = pyotp.TOTP(secret)
        assert c.post(f"{API}/auth/mfa/verify", headers=h, json={"code": totp.now(), "password": PASSWORD}).status_code == 200
        wrong = {totp.at(time.time() + d) for d in (-30, 0, 30)}
        guess = next(f"{n:06d}" for n in range(1, 1000) if f"{n:06d}" not in wrong)
        statuses: list[int] = []
        for _ in range(4):  # a new challenge every three guesses: no fresh budget
            challenge = c.post(f"{API}/auth/login", json={"email": "mia@example.com", "password": PASSWORD}).json()
            for _ in range(3):
                statuses.append(c.post(f"{API}/auth/mfa/challenge",
                                       json={"mfa_token": challenge["mfa_token"], "code": guess}).status_code)
        # 10 a minute per account (the verify above was one of them), however many challenges
        assert statuses == [401] * 9 + [429] * 3, statuses


def test_operator_resets_mfa_of_a_locked_out_owner(start: Any, cli: Cli) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c, "lou@example.com"))
        secret = c.post(f"{API}/auth/mfa/setup", headers=h, json={"password": PASSWORD}).json()["secret"]
        r = c.post(f"{API}/auth/mfa/verify", headers=h, json={"code": pyotp.TOTP(secret).now(), "password": PASSWORD})
        assert r.status_code == 200
        assert c.post(f"{API}/auth/login", json={"email": "lou@example.com", "password": PASSWORD}).json()[
            "mfa_required"] is True
        done = cli.ok("server", "users", "reset-mfa", "Lou@Example.com", "--json").json()
        assert done == {"email": "lou@example.com", "id": done["id"], "mfa_was_enabled": True, "mfa_enabled": False}
        assert c.get(f"{API}/users/profile", headers=h).status_code == 401  # every session ended
        tokens = c.post(f"{API}/auth/login", json={"email": "lou@example.com", "password": PASSWORD}).json()
        assert "access_token" in tokens
        profile = c.get(f"{API}/users/profile", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
        assert profile["mfa_enabled"] is False
    assert_one_line_error(cli("server", "users", "reset-mfa", "nobody@example.com"), 3)
    r = cli.ok("server", "users", "reset-mfa", "lou@example.com")
    assert "MFA was not on" in r.stderr


# -- Medium 5, 7: metrics behind a token, forwarded headers from named proxies only ----------------


def test_metrics_are_served_only_behind_the_token_and_labelled_by_route(start: Any) -> None:
    closed = start()
    with httpx.Client(base_url=closed.url, timeout=30) as c:
        assert c.get("/metrics").status_code == 404
    server = start("--metrics-token", "scrape-secret-1")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scrape = {"Authorization": "Bearer scrape-secret-1"}
        before = len(c.get("/metrics", headers=scrape).content)
        for i in range(150):
            c.get(f"{API}/files/{os.urandom(8).hex()}", headers=h)
            c.get(f"/no/such/{i}")
        text = c.get("/metrics", headers=scrape).text
    assert len(text) - before < 16 * 1024, (before, len(text))
    assert 'route="/api/v1/files/{file_id}",status="404"' in text
    assert "/no/such" not in text
    assert "scrape-secret-1" not in server.log()


def _logged_ip(server: ServerProcess, request_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(server.lines):
            if request_id in line:
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    return str(record["ip"])
        time.sleep(0.05)
    raise AssertionError(request_id)


def test_trust_proxy_names_the_proxies_whose_forwarded_headers_count(start: Any, cli: Cli) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "fwd-1"}
    elsewhere = start("--trust-proxy", "10.0.0.0/8,192.168.0.1")
    httpx.get(elsewhere.url + "/healthz", headers=spoofed, timeout=30)
    assert _logged_ip(elsewhere, "fwd-1") == "127.0.0.1"  # this peer is no named proxy: the header is ignored
    here = start("--trust-proxy", "10.0.0.0/8", "--trust-proxy", "127.0.0.1")
    httpx.get(here.url + "/healthz", headers=spoofed, timeout=30)
    assert _logged_ip(here, "fwd-1") == "203.0.113.9"
    for bad in ("anywhere", "10.0.0.0/33", ","):
        assert_one_line_error(cli("server", "--trust-proxy", bad, "--port", "0"), 2)


# -- Low 8, 9: crafted numbers, share downloads and the share-password lockout ----------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    pg: PgServer = request.getfixturevalue("postgres")
    return ["--db", pg.create_database()]


def test_huge_range_numbers_are_4xx_and_a_refused_share_download_is_not_counted(start: Any) -> None:
    server = start()
    huge = "9" * 4400
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        fid = c.post(f"{API}/files", params={"file_name": "a"}, content=b"0123456789", headers=h).json()["id"]
        for rng in (f"bytes={huge}-", f"bytes={huge}-{huge}", f"bytes=0-{huge}", f"bytes=-{huge}"):
            r = c.get(f"{API}/files/{fid}/download", headers={**h, "Range": rng})
            assert r.status_code in (200, 206, 416), (rng, r.status_code)
            assert r.status_code == 416 or r.content == b"0123456789"
        up = c.post(f"{API}/files/uploads", params={"file_name": "b"}, headers=h).json()
        r = c.put(f"{API}/files/uploads/{up['id']}", headers={**h, "Content-Range": f"bytes 0-{huge}/{huge}"}, content=b"x")
        assert (r.status_code, r.json()["code"]) == (400, "bad_range")
        share = c.post(f"{API}/shares", headers=h, json={"file_id": fid, "max_downloads": 1}).json()
        r = c.get(f"{API}/shares/{share['id']}/download", headers={"Range": "bytes=50-60"})
        assert r.status_code == 416
        r = c.get(f"{API}/shares/{share['id']}/download", headers={"Range": f"bytes={huge}-"})
        assert r.status_code == 416
        public = c.get(f"{API}/shares/{share['id']}/public").json()
        assert public["downloads_left"] == 1  # neither refusal used the one download up
        assert c.get(f"{API}/shares/{share['id']}/download").content == b"0123456789"
        assert c.get(f"{API}/shares/{share['id']}/download").status_code == 410


def test_share_password_lockout_holds_under_parallel_guesses(start: Any, db_args: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = start(*db_args)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        fid = c.post(f"{API}/files", params={"file_name": "a"}, content=b"secret", headers=h).json()["id"]
        share = c.post(f"{API}/shares", headers=h, json={"file_id": fid, "password_verifier": "right" * 4}).json()
    verifiers = [f"wrong-guess-{i:08d}" for i in range(9)] + ["right" * 4]

    def guess(v: str) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as one:
            return one.get(f"{API}/shares/{share['id']}/public", headers={"X-Share-Verifier": v}).status_code

    with ThreadPoolExecutor(len(verifiers)) as pool:
        statuses = list(pool.map(guess, verifiers))
    wrong = statuses[:9]
    # at most 5 guesses (--share-max-failures) were ever checked; the rest found it locked
    assert wrong.count(401) <= 5 and set(wrong) <= {401, 410}, statuses
    assert statuses[9] in (200, 410)  # the right one opens unless five failures came first
    r = httpx.get(f"{server.url}{API}/shares/{share['id']}/public", headers={"X-Share-Verifier": "right" * 4})
    assert r.status_code == 410 or wrong.count(401) < 5


# -- Low 10, 11: registration, reset mail, emails ---------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_registration_is_rate_limited_and_a_taken_email_costs_no_hash(start: Any) -> None:
    server = start(weak_kdf=False)  # real Argon2id (64 MiB, t=3): a hash is a visible cost
    with httpx.Client(base_url=server.url, timeout=60) as c:
        body = {"email": "taken@example.com", "password": PASSWORD}
        assert c.post(f"{API}/auth/register", json=body).status_code == 201
        used = _cpu_seconds(server.proc.pid)
        statuses = [c.post(f"{API}/auth/register", json=body).status_code for _ in range(5)]
        spent = _cpu_seconds(server.proc.pid) - used
    assert statuses == [409] * 4 + [429], statuses
    assert spent < 0.25, spent  # four hashes would be over a second of CPU here


class _HeldMailbox(Mailbox):
    """An SMTP server that holds each message until released: a request that mails inline would hang."""

    def __init__(self) -> None:
        self.release = threading.Event()
        super().__init__()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return await super().handle_DATA(server, session, envelope)


def test_reset_mail_goes_after_the_answer_for_every_request(start: Any) -> None:
    box = _HeldMailbox()
    try:
        server = start("--smtp-host", "127.0.0.1", "--smtp-port", str(box.port))
        with httpx.Client(base_url=server.url, timeout=30) as c:
            _account(c, "held@example.com")
            for who in ("held@example.com", "nobody@example.com"):
                r = c.post(f"{API}/auth/password-reset", json={"email": who}, timeout=10)
                assert r.status_code == 202
            assert box.messages == []  # answered while the mail server still holds the message
            box.release.set()
            assert _mail_token(box, 1)
            time.sleep(0.3)
            assert len(_reset_tokens(box)) == 1  # and only the real account got one
    finally:
        box.release.set()
        box.stop()


def test_emails_are_normalised_and_controls_refused(start: Any, cli: Cli) -> None:
    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(f"{API}/auth/register", json={"email": "\uff21da@Example.COM", "password": PASSWORD})
        assert r.status_code == 201 and r.json()["email"] == "ada@example.com"
        r = c.post(f"{API}/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
        assert r.status_code == 409  # the full-width spelling was the same address
        assert c.post(f"{API}/auth/login", json={"email": "ADA@\uff45xample.com", "password": PASSWORD}).status_code == 200
        for bad in ("\x1b[2Jevil@example.com", "zero\u200bwidth@example.com", "rtl\u202e@example.com",
                    "bell\x07@example.com", "nb\u00a0sp@example.com"):
            r = c.post(f"{API}/auth/register", json={"email": bad, "password": PASSWORD})
            assert (r.status_code, r.json().get("code")) in ((422, "invalid_email"), (422, None)), (bad, r.text)
    # an account from before the check: the operator's listing escapes what a terminal would act on
    import sqlalchemy as sa

    from livedata_cli.server import db

    engine = sa.create_engine(f"sqlite:///{os.environ['LIVEDATA_HOME']}/server/server.sqlite")
    with engine.begin() as conn:
        conn.execute(db.users.update().values(email="\x1b]0;pwned\x07old@example.com"))
    engine.dispose()
    out = cli.ok("server", "users", "list").stdout.decode()
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07old@example.com" in out


def test_a_share_download_the_server_fails_is_given_back(start: Any) -> None:
    from pathlib import Path

    server = start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        h = _auth(_account(c))
        fid = c.post(f"{API}/files", params={"file_name": "a"}, content=b"lost bytes", headers=h).json()["id"]
        share = c.post(f"{API}/shares", headers=h, json={"file_id": fid, "max_downloads": 1}).json()
        blobs = [p for p in (Path(os.environ["LIVEDATA_HOME"]) / "server" / "blobs").rglob("*") if p.is_file()]
        assert blobs
        for p in blobs:
            p.unlink()  # the blob store lost the file
        try:
            r = c.get(f"{API}/shares/{share['id']}/download")
            failed = r.status_code >= 500 or r.content != b"lost bytes"
        except httpx.HTTPError:
            failed = True
        assert failed
        assert c.get(f"{API}/shares/{share['id']}/public").json()["downloads_left"] == 1


# -- the checks themselves, on any input ------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=40,
)


def _nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    return 0


@given(_json)
@settings(max_examples=300, deadline=None)
def test_depth_counts_nesting_and_skips_brackets_in_strings(value: Any) -> None:
    from livedata_cli.server.bodylimit import check_json, depth

    text = json.dumps(value).encode()
    assert depth(text) == _nesting(value)
    assert check_json(text) is None  # plain JSON within the depth goes on to the route


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_check_json_never_raises_on_any_bytes(body: bytes) -> None:
    from livedata_cli.server.bodylimit import check_json

    refused = check_json(body)
    assert refused is None or refused[0] in ("too_deep", "invalid_json")


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_emails_accepted_are_printable_and_operator_output_always_is(text: str) -> None:
    from livedata_cli.server.emails import normalize, printable, refusal

    email_addr = normalize(text)
    if refusal(email_addr) is None:
        assert all(ch.isprintable() and not ch.isspace() for ch in email_addr)
        assert normalize(email_addr) == email_addr  # one spelling per address
    assert all(ch.isprintable() for ch in printable(text))
