"""The browser page of a share link: pinned script, strict CSP, an honest note, and its hash in ``share`` output.

The page is served by the server that stores the share, so a hostile server
can always serve another page: what livedata can do is pin the page's
script by Subresource Integrity, allow nothing else, say so on the page and
print the page's SHA-256 so that a careful recipient can compare.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
from test_share import api_shared  # noqa: F401

from conftest import Cli


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
