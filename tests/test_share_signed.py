"""Shares to an account are signed by their sender and bound to their id, sender and recipient.

A real ``livedata server`` whose database rows are edited directly plays the
hostile server: it relabels who a share is from, moves one share's sealed
manifest to another share, forges an unsigned box to the recipient's public
key (anyone can), and swaps the sender's signing key.  Each is refused with
exit 5 and nothing is written.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_api_store import account, other_home, server  # noqa: F401
from test_share_to import server_db

from conftest import Cli, assert_one_line_error, write
from livedata_cli.crypto import box
from livedata_cli.errors import IntegrityError

DATA = b"signed, sealed, delivered\n" * 40
NAME = "contract.txt"


def sql(srv: Any, statement: str, *args: Any) -> None:
    with sqlite3.connect(server_db(srv), timeout=30) as con:
        con.execute(statement, args)
    con.close()


def row_of(srv: Any, statement: str, *args: Any) -> Any:
    with sqlite3.connect(server_db(srv), timeout=30) as con:
        found = con.execute(statement, args).fetchone()
    con.close()
    return found


def test_a_relabelled_readdressed_forged_or_rekeyed_share_is_exit_5(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server()
    bob = cli
    account(bob, srv.url, "bob@example.com")
    bob.ok("init", "--store", srv.url)
    write(bob.cwd / NAME, DATA)
    bob.ok("upload", NAME)
    alice = other_home(cli, "alice")
    account(alice, srv.url, "alice@example.com")
    alice.ok("init", "--store", srv.url)
    alice.ok("share", "key")
    carol = other_home(cli, "carol")
    account(carol, srv.url, "carol@example.com")
    carol.ok("init", "--store", srv.url)
    carol.ok("share", "key")

    bobs_key = bob.ok("share", "key", "--json").json()
    assert len(bobs_key["signing_key"]) == 64 and bobs_key["signing_fingerprint"] != bobs_key["fingerprint"]
    assert row_of(srv, "SELECT signing_key FROM public_keys JOIN users ON users.id = user_id WHERE email = ?",
                  "bob@example.com") == (bobs_key["signing_key"],)
    first = bob.ok("share", NAME, "--to", "alice@example.com", "--json").json()
    second = bob.ok("share", NAME, "--to", "alice@example.com", "--json").json()
    third = bob.ok("share", NAME, "--to", "alice@example.com", "--json").json()

    # Alice sees Bob verified by the key she pins on first use.
    r = alice.ok("download", first["location"], "-o", "first.txt", "--json")
    got = r.json()
    assert (alice.cwd / "first.txt").read_bytes() == DATA
    assert got["from"] == "bob@example.com" and got["verified"] is True and got["first_use"] is True
    assert got["sender_key"] == bobs_key["signing_fingerprint"]
    assert alice.ok("download", first["location"], "-o", "-").stdout == DATA
    text = alice.ok("download", first["location"], "-o", "again.txt").stderr
    assert f"from bob@example.com (verified by pinned key {bobs_key['signing_fingerprint']})" in text
    listed = alice.ok("share", "ls", "--incoming", "--json").json()["shares"]
    assert {(s["verified"], s["sender_key"], s["name"]) for s in listed} == {(True, bobs_key["signing_fingerprint"], NAME)}
    assert "(verified, key " in alice.ok("share", "ls", "--incoming").out

    # Re-numbered: the server serves the first share's sealed manifest as the second share.
    (sealed_first,) = row_of(srv, "SELECT manifest FROM shares WHERE id = ?", first["location"])
    sql(srv, "UPDATE shares SET manifest = ? WHERE id = ?", sealed_first, second["location"])
    r = alice("download", second["location"], "-o", "second.txt")
    assert_one_line_error(r, 5)
    assert not (alice.cwd / "second.txt").exists()

    # Relabelled: the server says the third share is from Carol.
    sql(srv, "UPDATE shares SET owner_id = (SELECT id FROM users WHERE email = ?) WHERE id = ?",
        "carol@example.com", third["location"])
    r = alice("download", third["location"], "-o", "third.txt")
    assert_one_line_error(r, 5)
    assert "relabelled" in r.stderr
    assert not (alice.cwd / "third.txt").exists()
    listed = {s["id"]: s for s in alice.ok("share", "ls", "--incoming", "--json").json()["shares"]}
    assert listed[third["location"]]["verified"] is False and listed[third["location"]]["from"] == "carol@example.com"
    assert NAME not in listed[third["location"]]["name"]
    assert "NOT VERIFIED" in alice.ok("share", "ls", "--incoming").out

    # Forged: anyone can seal an unsigned box to Alice's public key and say it is from Bob.
    alices = bytes.fromhex(alice.ok("share", "key", "--json").json()["public_key"])
    (fid,) = row_of(srv, "SELECT file_id FROM shares WHERE id = ?", first["location"])
    forged = {"id": third["location"], "from": "bob@example.com", "to": "alice@example.com", "name": "x",
              "size": 1, "key": "00" * 32, "header_hash": "00", "length": 1}
    sql(srv, "UPDATE shares SET manifest = ?, owner_id = (SELECT id FROM users WHERE email = ?), file_id = ? "
        "WHERE id = ?", base64.b64encode(box.seal_to(alices, json.dumps(forged).encode(), b"livedata/v1/share-to"))
        .decode(), "bob@example.com", fid, third["location"])
    r = alice("download", third["location"], "-o", "forged.txt")
    assert_one_line_error(r, 5)
    assert "not signed" in r.stderr

    # Re-keyed: the server hands out another signing key for Bob; Alice's pin refuses it loudly.
    sql(srv, "UPDATE public_keys SET signing_key = ? WHERE user_id = (SELECT id FROM users WHERE email = ?)",
        "cd" * 32, "bob@example.com")
    r = alice("download", first["location"], "-o", "rekeyed.txt")
    assert_one_line_error(r, 5)
    assert f"signing key of bob@example.com changed (pinned {bobs_key['signing_fingerprint']}" in r.stderr
    assert not (alice.cwd / "rekeyed.txt").exists()


def test_a_server_from_before_signing_keys_is_migrated(tmp_path: Path) -> None:
    from livedata_cli.server import db

    database = db.Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    assert "008_signing_keys" in database.migrate()
    with database.write() as conn:
        conn.exec_driver_sql("ALTER TABLE public_keys DROP COLUMN signing_key")
        conn.exec_driver_sql("DELETE FROM schema_migrations WHERE name = '008_signing_keys'")
    assert database.pending() == ["008_signing_keys"]
    assert database.migrate() == ["008_signing_keys"]
    with database.read() as conn:
        conn.exec_driver_sql("SELECT signing_key FROM public_keys").fetchall()
    database.dispose()


SENDER, _ = box.generate()
RECIPIENT, RECIPIENT_PUBLIC = box.generate()
CONTEXT = box.share_context(b"livedata/v1/share-to", "ab" * 16, "bob@example.com", "alice@example.com")
SIGNED = box.seal_signed(SENDER, RECIPIENT_PUBLIC, b'{"name": "x"}', CONTEXT)


def test_a_signed_box_opens_only_in_its_context() -> None:
    signing = box.signing_public(SENDER)
    assert box.open_signed(RECIPIENT, signing, SIGNED, CONTEXT) == b'{"name": "x"}'
    for other in (
        box.share_context(b"livedata/v1/share-to", "cd" * 16, "bob@example.com", "alice@example.com"),
        box.share_context(b"livedata/v1/share-to", "ab" * 16, "carol@example.com", "alice@example.com"),
        box.share_context(b"livedata/v1/share-to", "ab" * 16, "bob@example.com", "dave@example.com"),
    ):
        with pytest.raises(IntegrityError):
            box.open_signed(RECIPIENT, signing, SIGNED, other)
    with pytest.raises(IntegrityError):
        box.open_signed(RECIPIENT, box.signing_public(RECIPIENT), SIGNED, CONTEXT)
    with pytest.raises(IntegrityError):
        box.share_context(b"livedata/v1/share-to", "ab", "bob@example.com\x00", "alice@example.com")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255),
       junk=st.binary(max_size=200), cut=st.integers(min_value=0))
def test_a_changed_or_hostile_signed_box_is_an_integrity_error(position: int, flip: int, junk: bytes, cut: int) -> None:
    signing = box.signing_public(SENDER)
    changed = bytearray(SIGNED)
    changed[position % len(changed)] ^= flip
    for blob in (bytes(changed), junk, SIGNED[: cut % len(SIGNED)], SIGNED + junk[:1] if junk else SIGNED + b"x"):
        with pytest.raises(IntegrityError):
            box.open_signed(RECIPIENT, signing, blob, CONTEXT)
