"""``livedata share REF --to EMAIL``: a share sealed to another account's pinned X25519 key.

Three accounts on one real ``livedata server``, each with a vault of its own
(its own LIVEDATA_HOME): Bob shares to Alice, Alice lists and downloads it
with her vault, Carol gets nothing, and a server that swaps Alice's public
key is caught by the key Bob pinned.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_store import account, other_home, server, tokens_file  # noqa: F401
from test_share import assert_nowhere, secrets_of

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.inprocess

DATA = b"the quarterly figures, for alice only\n" * 50
NAME = "figures-for-alice.csv"


def token_of(cli: Cli) -> str:
    (token,) = [t["access_token"] for t in json.loads(tokens_file(cli).read_text()).values()]
    return str(token)


def server_db(srv: Any) -> Path:
    (found,) = [p for p in Path(srv.home).rglob("*.sqlite*") if not p.name.endswith(("-wal", "-shm", "-journal"))]
    return found


def test_share_to_an_account_opens_only_with_her_vault(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server()
    bob = cli
    account(bob, srv.url, "bob@example.com")
    bob.ok("init", "--store", srv.url)
    write(bob.cwd / NAME, DATA)
    bob.ok("upload", NAME)

    alice = other_home(cli, "alice")
    account(alice, srv.url, "alice@example.com")
    alice.ok("init", "--store", srv.url)
    assert alice.ok("share", "ls", "--incoming", "--json").json() == {"shares": []}  # makes her key pair
    her_print = alice.ok("share", "key", "--json").json()["fingerprint"]

    # A share to an account with no key yet, or to a folder vault, is refused.
    assert_one_line_error(bob("share", NAME, "--to", "nobody@example.com"), 3)
    assert_one_line_error(bob("share", NAME, "--to", "alice@example.com", "--password"), 2)

    made = bob.ok("share", NAME, "--to", "Alice@example.com", "--json").json()
    assert made["to"] == "alice@example.com" and made["first_use"] is True and made["fingerprint"] == her_print
    assert "#" not in made["link"] and made["store"] == "api"
    r = bob.ok("share", NAME, "--to", "alice@example.com")
    assert her_print not in r.stderr  # pinned: shown on first use only
    assert [s["id"] for s in bob.ok("share", "ls", "--json").json()["shares"]][:1] == [made["id"]]

    listed = alice.ok("share", "ls", "--incoming", "--json").json()["shares"]
    assert len(listed) == 2 and {s["name"] for s in listed} == {NAME} and {s["from"] for s in listed} == {"bob@example.com"}
    got = alice.ok("download", made["link"], "-o", "got.csv", "--json").json()
    assert got["from"] == "bob@example.com" and got["bytes"] == len(DATA)
    assert (alice.cwd / "got.csv").read_bytes() == DATA
    alice.ok("download", made["location"], "-o", "by-id.csv")  # the share's id, as 'share ls --incoming' shows it
    assert (alice.cwd / "by-id.csv").read_bytes() == DATA
    # Another machine of Alice's vault has the same key pair (it lives in the store).
    laptop = other_home(alice, "alice-laptop")
    laptop.ok("login", "--server", srv.url, "--email", "alice@example.com", env={"LIVEDATA_PASSWORD": "a long account password"})
    laptop.ok("init", "--store", srv.url)
    assert laptop.ok("share", "key", "--json").json()["fingerprint"] == her_print
    laptop.ok("download", made["link"], "-o", "-")
    assert ("share-receive", NAME) in [(e["action"], e["path"]) for e in alice.ok("audit", "--json").json()]
    assert ("share", NAME) in [(e["action"], e["path"]) for e in bob.ok("audit", "--json").json()]

    # Carol: nothing through her account, nothing through the public link endpoints.
    carol = other_home(cli, "carol")
    account(carol, srv.url, "carol@example.com")
    carol.ok("init", "--store", srv.url)
    sid = made["location"]
    assert_one_line_error(carol("download", made["link"], "-o", "x"), 3)
    assert_one_line_error(carol("download", sid, "-o", "x"), 3)
    assert not (carol.cwd / "x").exists()
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        auth = {"Authorization": f"Bearer {token_of(carol)}"}
        assert c.get(f"/shares/incoming/{sid}/download", headers=auth).status_code == 404
        assert c.get("/shares/incoming", headers=auth).json()["total"] == 0
        assert c.get(f"/shares/{sid}/public").status_code == 404
        assert c.get(f"/shares/{sid}/download").status_code == 404
        # The server's audit trail has the share on both sides.
        for who, action in ((alice, "share.receive"), (bob, "share.download"), (bob, "share.create")):
            logs = c.get("/users/me/audit-logs", params={"action": action},
                         headers={"Authorization": f"Bearer {token_of(who)}"}).json()
            assert sid in [e["object_id"] for e in logs["items"]], action

    # Bob revokes his second share: Alice sees it revoked and cannot fetch it (exit 7).
    second = next(s for s in bob.ok("share", "ls", "--json").json()["shares"] if s["location"] != sid)
    bob.ok("share", "revoke", second["id"])
    states = {s["id"]: s["state"] for s in alice.ok("share", "ls", "--incoming", "--json").json()["shares"]}
    assert states == {sid: "active", second["location"]: "revoked"}
    assert_one_line_error(alice("download", second["location"], "-o", "revoked.csv"), 7)
    assert not (alice.cwd / "revoked.csv").exists()

    # The server swaps Alice's public key: Bob's pinned key catches it, nothing is shared.
    db = server_db(srv)
    with sqlite3.connect(db, timeout=30) as con:
        con.execute(
            "UPDATE public_keys SET public_key = ? WHERE user_id = (SELECT id FROM users WHERE email = ?)",
            ("ab" * 32, "alice@example.com"),
        )
    con.close()
    before = len(bob.ok("share", "ls", "--json").json()["shares"])
    r = bob("share", NAME, "--to", "alice@example.com")
    assert_one_line_error(r, 5)
    assert "public key of alice@example.com changed (pinned " + her_print in r.stderr
    assert len(bob.ok("share", "ls", "--json").json()["shares"]) == before

    # The server never held the data key or the name: a link share of the same version
    # gives the data key to look for.
    link = bob.ok("share", NAME, "--json").json()
    srv.stop()
    with sqlite3.connect(db) as con:
        (sealed,) = con.execute("SELECT manifest FROM shares WHERE id = ?", (sid,)).fetchone()
        (envelope,) = con.execute("SELECT manifest FROM shares WHERE id = ?", (link["location"],)).fetchone()
    con.close()
    assert base64.b64decode(sealed)[:4] == b"LDA\x01"
    needles = [*secrets_of(link["key"], base64.b64decode(envelope)), NAME.encode(), DATA[:40]]
    assert_nowhere(needles, [p.read_bytes() for p in Path(srv.home).rglob("*") if p.is_file()])
    assert_nowhere(needles, [srv.log().encode()])


def test_share_to_needs_an_api_store(vault_cli: Cli) -> None:
    write(vault_cli.cwd / "a.txt", "hello\n")
    vault_cli.ok("upload", "a.txt")
    for args in (("share", "a.txt", "--to", "alice@example.com"), ("share", "ls", "--incoming"), ("share", "key")):
        r = vault_cli(*args)
        assert_one_line_error(r, 2)
        assert "Live-Data API store" in r.stderr
    assert vault_cli.ok("share", "ls", "--json").json() == {"shares": []}
