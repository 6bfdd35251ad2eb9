"""The browser page of a share link: pinned script, strict CSP, an honest note, and its hash in ``share`` output.

The page is served by the server that stores the share, so a hostile server
can always serve another page: what livedata can do is pin the page's
script by Subresource Integrity, allow nothing else, say so on the page and
print the page's SHA-256 so that a careful recipient can compare.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
from pathlib import Path
from typing import Any

import httpx
from test_share import api_shared  # noqa: F401

from conftest import Cli, write
from pgserver import ServerProcess


def test_the_page_pins_its_script_and_its_hash_is_printed(api_shared: tuple[Cli, Any]) -> None:  # noqa: F811
    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--json").json()
    page = httpx.get(f"{srv.url}/s/{made['location']}")
    script = httpx.get(f"{srv.url}/s/share.js")
    assert page.status_code == 200 and script.status_code == 200
    # The script tag names the script's SHA-384: a changed script does not run.
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(script.content).digest()).decode()
    assert f'<script src="/s/share.js" integrity="{integrity}" crossorigin="anonymous">' in page.text
    assert script.headers["x-content-type-options"] == "nosniff"
    # A strict policy: no inline script or style but the one hashed style, nothing from elsewhere.
    csp = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["style-src"].startswith("'sha256-") and "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["require-trusted-types-for"] == "'script'"
    # The page says where it comes from and what the trusted way is.
    assert "comes from the server that stores the share" in page.text and "livedata download" in page.text
    # 'share' prints the page's SHA-256: the same for every share, and what this server serves.
    assert made["page_sha256"] == hashlib.sha256(page.content).hexdigest()
    r = cli.ok("share", "report.pdf")
    assert f"SHA-256 {made['page_sha256']}" in r.stderr and "livedata download" in r.stderr
    assert "warning" not in r.stderr


class _Rewriting:
    """A reverse proxy in front of a real server that serves its own page at ``/s/<id>``
    (a server that changed the page: the sender's 'share' notices)."""

    def __init__(self, target: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "GET" and self.path.startswith("/s/") and self.path != "/s/share.js":
                    data, status, headers = b"<html>another page</html>", 200, {"Content-Type": "text/html"}
                else:
                    skip = {"host", "content-length", "transfer-encoding", "connection"}
                    r = httpx.request(self.command, target + self.path, content=body, timeout=60,
                                      headers={k: v for k, v in self.headers.items() if k.lower() not in skip})
                    data, status = r.content, r.status_code
                    headers = {k: v for k, v in r.headers.items()
                               if k.lower() not in {"content-length", "transfer-encoding", "connection",
                                                    "content-encoding"}}
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_server_that_serves_another_page_is_named(cli: Cli, livedata_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"))
    srv = ServerProcess([], env)
    proxy = _Rewriting(srv.url)
    try:
        account = {"LIVEDATA_PASSWORD": "a long account password"}
        cli.ok("register", "--server", proxy.url, "--email", "eve@example.com", env=account)
        cli.ok("login", "--server", proxy.url, "--email", "eve@example.com", env=account)
        cli.ok("init", "--store", proxy.url)
        write(cli.cwd / "a.txt", "a\n")
        cli.ok("upload", "a.txt")
        r = cli.ok("share", "a.txt")
        assert "serves a browser page for this link that differs" in r.stderr, r.stderr
        made = cli.ok("share", "a.txt", "--json")
        assert made.json()["page_sha256"] != hashlib.sha256(b"<html>another page</html>").hexdigest()
        assert "differs" in made.stderr
    finally:
        proxy.stop()
        srv.stop()
