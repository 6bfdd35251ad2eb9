"""A server that answers what the Live-Data API never answers (a captive portal's
HTML, ``null``, fields of the wrong type, 200 where the API answers 201): every
command says so in one line and exits 6, as for a failing server; never a
traceback, never exit 1 (a bug) or 2 (a usage error)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

ANSWERS = {
    "html": ("text/html", b"<html><body>Log in to the hotel Wi-Fi</body></html>"),
    "null": ("application/json", b"null"),
    "list": ("application/json", b"[1, 2]"),
    "empty object": ("application/json", b"{}"),
    "items not a list": ("application/json", b'{"items": "x", "id": 7, "size": "big", "email": 5}'),
    "wrong types": (
        "application/json",
        b'{"items": [{"id": 1, "file_name": 5, "size": "big", "created_at": "soon"}], "id": 1, "size": "big",'
        b' "email": ["a"], "used_bytes": "lots", "quota_bytes": {}}',
    ),
}


class _Odd(BaseHTTPRequestHandler):
    answer: tuple[str, bytes] = ANSWERS["html"]

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        kind, body = self.answer
        self.send_response(200)  # 200 to everything, also where the API answers 201 or 204
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[tuple[str, type[_Odd]]]:
    handler = type("Handler", (_Odd,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_a_server_answering_nonsense_is_exit_6_in_one_line(
    cli: Cli, odd_server: tuple[str, type[_Odd]], name: str
) -> None:
    url, handler = odd_server
    handler.answer = ANSWERS[name]
    env = {"LIVEDATA_TOKEN": "a-token", "LIVEDATA_API_RETRIES": "0"}
    write(cli.cwd / "a.txt", "a")
    for args in (("account", "--server", url), ("init", "--store", url), ("account", "devices", "--server", url)):
        r = cli(*args, env=env)
        if name == "empty object" and args[1] == "devices":
            assert r.code == 0  # no devices: an answer the API could give
            continue
        assert_one_line_error(r, 6)
        assert url.split("//")[1] in r.stderr, r.stderr
