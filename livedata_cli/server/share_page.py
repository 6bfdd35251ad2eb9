"""The page behind ``https://HOST/s/<id>#<key>``: a share link opened in a browser.

A recipient without livedata opens the link; the server answers ``/s/<id>``
with a small static page and ``/s/share.js`` (no build step, no framework).
The script reads the key from the fragment (which the browser never sends),
fetches the sealed manifest (``/api/v1/shares/<id>/public``), opens it with
WebCrypto (HKDF-SHA256, AES-256-GCM), then streams the data
(``/api/v1/shares/<id>/download``) and decrypts it segment by segment as the
container format says (header MAC, key commitment, one nonce per segment,
the final flag), and saves the file only after the last segment
authenticated.  The key never leaves the page.

Password-protected shares need Argon2id, which WebCrypto lacks: the page
says to open those with ``livedata download``.

The page and its script live in ``livedata_cli/sharepage.py`` (pinned by
Subresource Integrity and a strict CSP; why that is a limit, not a cure,
is said there).
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Response

from livedata_cli.sharepage import CSP, PAGE, SHARE_JS

router = APIRouter(include_in_schema=False)

_CSP = CSP
_ETAG = hashlib.sha256(SHARE_JS.encode()).hexdigest()[:16]


@router.get("/s/share.js")
def share_js() -> Response:
    return Response(
        SHARE_JS, media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "ETag": _ETAG, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/s/{share_id}")
def share_page(share_id: str) -> Response:
    return Response(
        PAGE, media_type="text/html", headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"}
    )
