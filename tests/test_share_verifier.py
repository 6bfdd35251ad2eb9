"""A password share's check value never reaches the server: it keeps only an Argon2id hash of it.

The check value is what a client sends to prove it knows the password (the
verifier); a server copy of the envelope that held it in clear would let
anyone who reads the server's database pass that proof.
"""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import httpx
from test_share import DATA, api_shared  # noqa: F401
from test_share_to import server_db, token_of

from conftest import Cli, assert_one_line_error
from livedata_cli.crypto import share_manifest as sc

PW = {"LIVEDATA_SHARE_PASSWORD": "correct horse"}


def test_the_server_copy_of_a_password_share_holds_no_verifier(api_shared: tuple[Cli, Any]) -> None:  # noqa: F811
    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--password", "--json", env=PW).json()
    secret_text, _dot, hint = made["key"].partition(".")
    check = sc.check_from_hint(sc.decode_secret(secret_text), hint, PW["LIVEDATA_SHARE_PASSWORD"])
    with sqlite3.connect(server_db(srv), timeout=30) as con:
        manifest, verifier_hash = con.execute(
            "SELECT manifest, password_verifier_hash FROM shares WHERE id = ?", (made["location"],)
        ).fetchone()
    con.close()
    raw = base64.b64decode(manifest)
    assert check not in raw and check.hex().encode() not in raw and check.hex() not in manifest
    assert verifier_hash and verifier_hash.startswith("$argon2id$")

    # It still opens with the password, and a wrong one is still exit 4.
    link = made["link"]
    assert_one_line_error(cli("download", link, "-o", "x.pdf", env={"LIVEDATA_SHARE_PASSWORD": "wrong"}), 4)
    cli.ok("download", link, "-o", "ok.pdf", env=PW)
    assert (cli.cwd / "ok.pdf").read_bytes() == DATA

    # An older client that sends an envelope holding the verifier is refused.
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        auth = {"Authorization": f"Bearer {token_of(cli)}"}
        files = c.get("/files", headers=auth).json()["items"]
        verifier = "ab" * 16
        envelope = base64.b64encode(b"LDS\x01" + bytes.fromhex(verifier) + b"rest").decode()
        r = c.post("/shares", headers=auth, json={"file_id": files[0]["id"], "manifest": envelope,
                                                  "password_verifier": verifier})
        assert r.status_code == 422 and "verifier" in r.text
        # A share to an account is opened by its recipient's login and keys, not a
        # password: one that asks for both is refused rather than half-honoured.
        r = c.post("/shares", headers=auth, json={"file_id": files[0]["id"], "manifest": base64.b64encode(b"LDS\x01x").decode(),
                                                  "password_verifier": "cd" * 16, "recipient_email": "someone@example.com"})
        assert (r.status_code, r.json().get("code")) == (422, "password_with_recipient"), r.text
