"""``livedata account export`` and ``account delete`` on a real ``livedata server`` process.

The export is restored the way a user would: ``unzip``, a fresh home attached
to the unzipped folder store, every file downloaded and compared.  The
deletion is checked in the server's own database (every row of every table)
and blob folder, on SQLite and PostgreSQL.  The commands run in the test's
process, except those on a terminal (``run_on_tty``), which are real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from test_api_store import (  # noqa: F401  (fixtures)
    PASSWORD,
    account,
    other_home,
    proxies,
    same_keys,
    server,
    steps_with_room,
    tokens_file,
)

from conftest import Cli, assert_one_line_error, run_on_tty, write
from pgserver import postgres  # noqa: F401

pytestmark = pytest.mark.inprocess

MIB = 1024 * 1024
SECRET_FIELDS = (
    "password_hash",
    "mfa_secret",
    "password_verifier",
    "token_hash",
    "code_hash",
    "trust_hash",
    "refresh",
)


def db_url(srv: Any, args: list[str]) -> str:
    return args[1] if args else f"sqlite:///{Path(srv.home) / 'server' / 'server.sqlite'}"


def every_row(url: str) -> list[tuple[str, str]]:
    """(table, row as text) for every row of every table of the server's database."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            out = []
            for name in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                    out.append((name, " ".join(str(v) for v in row)))
            return out
    finally:
        engine.dispose()


def blob_keys(url: str, email: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return set(
                conn.scalars(
                    sa.text(
                        "SELECT f.blob_key FROM files f JOIN users u ON u.id = f.owner_id WHERE u.email = :e"
                    ),
                    {"e": email},
                )
            )
    finally:
        engine.dispose()


def blob_files(srv: Any) -> set[str]:
    root = Path(srv.home) / "server" / "blobs" / "data"
    return {f"data/{p.name}" for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_export_restores_in_a_fresh_home_and_delete_leaves_nothing(
    cli: Cli,
    server: Any,  # noqa: F811
    database: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    args = (
        []
        if database == "sqlite"
        else ["--db", request.getfixturevalue("postgres").create_database()]
    )
    srv = server(*args)
    url = srv.url
    account(cli, url, "ada@example.com")
    cli.ok("init", "--store", url)
    contents = {
        "small.txt": b"the merger happens on tuesday\n",
        "empty.bin": b"",
        "deep/nested/notes.md": b"# notes\n" * 1000,
        "big.bin": os.urandom(9 * MIB + 7),  # over 8 MiB: sent as a resumable upload
    }
    for name, data in contents.items():
        write(cli.cwd / "src" / name, data)
    cli.ok("upload", "src", "--recursive", "--as", "v/")
    link = cli.ok("share", "v/small.txt", "--json").json()
    share_id = link["location"]

    bob = other_home(cli, "bob")
    account(bob, url, "bob@example.com")
    bob.ok("init", "--store", url)
    write(bob.cwd / "bob.txt", b"bob's own file")
    bob.ok("upload", "bob.txt")

    # Two files another client put through the API: one under a name that is no store key, one trashed.
    api = f"{url}/api/v1"
    ada_auth = {
        "Authorization": f"Bearer {next(iter(json.loads(tokens_file(cli).read_text()).values()))['access_token']}"
    }
    odd = httpx.post(
        f"{api}/files", params={"file_name": "holiday photo.jpg"}, content=b"odd", headers=ada_auth
    )
    binned = httpx.post(
        f"{api}/files", params={"file_name": "binned"}, content=b"binned", headers=ada_auth
    )
    assert odd.status_code == binned.status_code == 201
    assert httpx.delete(f"{api}/files/{binned.json()['id']}", headers=ada_auth).status_code == 204

    # Export: the counts, the JSON documents, and no secret anywhere in them.
    out = cli.ok("account", "export", "-o", str(tmp_path / "my-data.zip"), "--json").json()
    same_keys("account export", out)
    assert out["path"] == str(tmp_path / "my-data.zip") and out["store"] == "store"
    assert out["shares"] == 1 and out["sessions"] >= 1 and out["audit"] > 5
    assert out["files"] == out["blobs"] >= 6  # config, a key slot, journals and the four files
    assert out["blob_bytes"] > len(contents["big.bin"])
    assert not list(tmp_path.glob(".my-data.zip.*"))  # the temporary file is gone
    unzipped = tmp_path / "x"
    subprocess.run(["unzip", "-q", str(tmp_path / "my-data.zip"), "-d", str(unzipped)], check=True)
    docs = {
        n: json.loads((unzipped / n).read_text())
        for n in (
            "account.json",
            "sessions.json",
            "files.json",
            "shares.json",
            "audit.json",
            "manifest.json",
        )
    }
    assert (
        docs["account.json"]["email"] == "ada@example.com"
        and docs["account.json"]["role"] == "user"
    )
    assert len(docs["files.json"]) == out["files"]
    assert all((unzipped / f["path"]).stat().st_size == f["size"] for f in docs["files.json"])
    paths = {f["file_name"]: f["path"] for f in docs["files.json"]}
    assert paths["holiday photo.jpg"] == f"other/{odd.json()['id']}"
    assert paths["binned"] == f"trash/{binned.json()['id']}"
    assert (unzipped / paths["binned"]).read_bytes() == b"binned"
    assert paths["config"] == "store/config"
    assert [s["id"] for s in docs["shares.json"]] == [share_id]
    assert {"account.export", "file.upload", "share.create"} <= {
        a["action"] for a in docs["audit.json"]
    }
    assert docs["manifest.json"]["counts"]["files"] == out["files"]
    text = json.dumps(docs)
    assert [f for f in SECRET_FIELDS if f in text] == []
    assert "bob" not in text

    # The zip's store/ is a folder store: a fresh home attaches and restores every file.
    fresh = other_home(cli, "restored")
    assert fresh.ok("init", "--store", str(unzipped / "store"), "--json").json()["created"] is False
    for name, data in contents.items():
        target = fresh.cwd / "out" / name
        fresh.ok("download", f"v/{name}", "-o", str(target))
        assert target.read_bytes() == data, name

    # An upload in progress: its spool file goes with the account.
    opened = httpx.post(f"{api}/files/uploads", params={"file_name": "partial"}, headers=ada_auth)
    assert opened.status_code == 201, opened.text
    part = httpx.put(
        f"{api}/files/uploads/{opened.json()['id']}",
        content=b"p" * 1000,
        headers={**ada_auth, "Content-Range": "bytes 0-999/*"},
    )
    assert part.status_code == 200, part.text
    spool = Path(srv.home) / "server" / "uploads" / f"{opened.json()['id']}.part"
    assert spool.stat().st_size == 1000

    # Delete: refused without a confirmation in a script, or with a wrong password.
    access = json.loads(tokens_file(cli).read_text())
    tokens = next(iter(access.values()))
    assert_one_line_error(cli("account", "delete", env={"LIVEDATA_PASSWORD": PASSWORD}), 2)
    r = cli("account", "delete", "--yes", env={"LIVEDATA_PASSWORD": "not the password"})
    assert_one_line_error(r, 4)
    assert "wrong password" in r.stderr
    assert cli.ok("account", "--json").json()["email"] == "ada@example.com"  # still there

    gone = cli.ok(
        "account", "delete", "--yes", "--json", env={"LIVEDATA_PASSWORD": PASSWORD}
    ).json()
    same_keys("account delete", gone)
    assert (
        gone["deleted"] is True
        and gone["email"] == "ada@example.com"
        and gone["tokens_forgotten"] is True
    )
    assert (gone["files"], gone["blobs"], gone["shares"]) == (out["files"], out["files"], 1)
    assert gone["bytes"] == out["blob_bytes"] and gone["sessions"] >= 1
    assert url not in tokens_file(cli).read_text()  # this home forgot its tokens
    assert not spool.exists()

    # Its tokens and its share link stop working; bob's data is untouched.
    assert (
        httpx.get(
            f"{api}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).status_code
        == 401
    )
    r = httpx.post(f"{api}/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    assert httpx.get(f"{api}/shares/{share_id}/public").status_code in (404, 410)
    assert_one_line_error(cli("download", link["link"], "-o", str(tmp_path / "nope")), 3)
    assert bob.ok("download", "bob.txt", "-o", "-").stdout == b"bob's own file"
    login = httpx.post(f"{api}/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 401

    # The server's database names ada nowhere, and its blob folder holds bob's blobs only.
    srv.stop()
    url_db = db_url(srv, args)
    rows = every_row(url_db)
    uid = docs["account.json"]["id"]
    assert [t for t, row in rows if uid in row or "ada@example.com" in row] == []
    deletion = [row for t, row in rows if t == "audit_logs" and "account.delete" in row]
    assert (
        len(deletion) == 1 and gone["deletion_id"] in deletion[0] and "127.0.0.1" not in deletion[0]
    )
    assert blob_files(srv) == blob_keys(url_db, "bob@example.com") != set()


def test_delete_with_mfa_needs_a_code_and_a_terminal_confirms_by_email(
    cli: Cli,
    server: Any,  # noqa: F811
) -> None:
    srv = server()
    url = srv.url
    account(cli, url, "carol@example.com")
    setup = cli.ok("mfa", "setup", "--json", "--server", url, env={"LIVEDATA_PASSWORD": PASSWORD}).json()
    totp = pyotp.TOTP(setup["secret"])
    step = steps_with_room()
    codes = cli.ok("mfa", "verify", totp.at(step * 30), "--json", "--server", url, env={"LIVEDATA_PASSWORD": PASSWORD}).json()[
        "recovery_codes"
    ]
    env = {"LIVEDATA_PASSWORD": PASSWORD}
    r = cli("account", "delete", "--yes", "--server", url, env=env)
    assert_one_line_error(r, 4)
    assert "MFA" in r.stderr
    r = cli(
        "account",
        "delete",
        "--yes",
        "--server",
        url,
        "--code",
        "000000" if totp.now() != "000000" else "111111",
        env=env,
    )
    assert_one_line_error(r, 4)

    # On a terminal: the email typed must match, else nothing happens.
    tty_env = {**cli.env, "LIVEDATA_PASSWORD": PASSWORD}
    code, output = run_on_tty(
        ["account", "delete", "--server", url], tty_env, cli.cwd, ["someone@else.example"]
    )
    assert code == 2 and "differs" in output
    assert cli.ok("account", "--server", url, "--json").json()["email"] == "carol@example.com"

    code, output = run_on_tty(
        ["account", "delete", "--server", url, "--recovery-code", codes[0]],
        tty_env,
        cli.cwd,
        ["carol@example.com"],
    )
    assert code == 0, output
    assert "deleted" in output and "sessions" in output
    r = httpx.post(
        f"{url}/api/v1/auth/login", json={"email": "carol@example.com", "password": PASSWORD}
    )
    assert r.status_code == 401


def test_a_cut_export_leaves_no_file(cli: Cli, server: Any, proxies: Any, tmp_path: Path) -> None:  # noqa: F811
    srv = server()
    account(cli, srv.url, "dan@example.com")
    cli.ok("init", "--store", srv.url)
    write(cli.cwd / "big.bin", os.urandom(3 * MIB))
    cli.ok("upload", "big.bin")
    proxy = proxies(srv.url)
    proxied = Cli({**cli.env, "LIVEDATA_API_RETRIES": "0"}, cli.cwd, inprocess=cli.inprocess)
    proxied.ok(
        "login",
        "--server",
        proxy.url,
        "--email",
        "dan@example.com",
        env={"LIVEDATA_PASSWORD": PASSWORD},
    )
    dest = tmp_path / "cut.zip"
    write(dest, b"an older export")
    proxy.cut_after(MIB, "down")
    r = proxied("account", "export", "-o", str(dest), "--server", proxy.url)
    assert_one_line_error(r, 6)
    assert proxy.cuts == 1
    assert dest.read_bytes() == b"an older export"  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file
    whole = proxied.ok("account", "export", "-o", str(dest), "--server", proxy.url, "--json").json()
    assert whole["blob_bytes"] > 3 * MIB
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None


def test_an_export_does_not_follow_a_link_planted_at_its_temporary_name(
    cli: Cli, server: Any, tmp_path: Path  # noqa: F811
) -> None:
    """Whoever else can write the target's folder cannot plant a link where the
    export writes its temporary file: it is created exclusively, under a name
    nobody can guess, so the export never writes through it."""
    assert cli.inprocess  # the command runs in this process: its pid is os.getpid()
    srv = server()
    account(cli, srv.url, "eve@example.com")
    cli.ok("init", "--store", srv.url)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file\n")
    dest = tmp_path / "out.zip"
    (tmp_path / f".out.zip.{os.getpid()}.part").symlink_to(victim)
    cli.ok("account", "export", "-o", str(dest), "--server", srv.url)
    assert victim.read_bytes() == b"someone else's file\n"
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
