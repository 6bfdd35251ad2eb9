"""Share links and share files: made by a vault, opened by a stranger with no vault.

Expiry is tested with a movable clock (LIVEDATA_TESTONLY_NOW), never sleeps;
moto does not enforce presigned-URL expiry, so on S3 it is the manifest's own
expiry that is checked.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3server
from s3server import all_keys, aws_env

from conftest import TEST_RUN, Cli, assert_one_line_error, write
from livedata_cli.crypto import share_manifest as sc

pytestmark = pytest.mark.inprocess

moto_url, s3, bucket = s3server.moto_url, s3server.s3, s3server.bucket

DATA = os.urandom(1024 * 1024 + 4321)  # two container segments


def stranger(cli: Cli, tmp_path: Path, name: str = "stranger") -> Cli:
    """Someone with no vault, no passphrase, no keyring, no AWS credentials."""
    env = {k: v for k, v in cli.env.items() if not k.startswith(("LIVEDATA_", "AWS_"))}
    env.update({"LIVEDATA_HOME": str(tmp_path / name), "LIVEDATA_NO_KEYRING": "1", "LIVEDATA_TESTONLY_WEAKEN_KDF": "1",
                "LIVEDATA_TESTONLY_RUN": TEST_RUN})
    work = tmp_path / f"{name}-work"
    work.mkdir()
    return Cli(env, work)


def secrets_of(key: str, envelope: bytes, password: str | None = None) -> list[bytes]:
    """What must never be in a store: the share secret (raw and printed) and the data key (raw and hex)."""
    secret = sc.decode_secret(key)
    data_key = bytes.fromhex(sc.open_manifest(secret, envelope, password)["key"])
    return [secret, key.encode(), base64.b64encode(secret)[:40], data_key, data_key.hex().encode()]


def assert_nowhere(needles: list[bytes], blobs: list[bytes]) -> None:
    for blob in blobs:
        for needle in needles:
            assert needle not in blob


def envelope_of(share_file: Path) -> bytes:
    raw = share_file.read_bytes()
    n = int.from_bytes(raw[8:12], "big")
    return raw[12 : 12 + n]


# -- folder store: share files -------------------------------------------------------
@pytest.fixture
def shared(vault_cli: Cli) -> Cli:
    write(vault_cli.cwd / "report.pdf", DATA)
    vault_cli.ok("upload", "report.pdf", "--as", "docs/report.pdf")
    return vault_cli


def test_share_file_opens_for_a_stranger_and_never_reaches_the_store(shared: Cli, tmp_path: Path) -> None:
    made = shared.ok("share", "docs/report.pdf", "--out", "report.ldshare", "--json").json()
    assert made["store"] == "file" and made["state"] == "active" and made["size"] == len(DATA)
    key, share_file = made["key"], shared.cwd / "report.ldshare"
    assert made["link"] == f"report.ldshare#{key}"
    assert share_file.stat().st_mode & 0o077 == 0

    other = stranger(shared, tmp_path)
    copy = other.cwd / "report.ldshare"
    copy.write_bytes(share_file.read_bytes())
    other.ok("download", f"report.ldshare#{key}", "-o", "out.pdf")
    assert (other.cwd / "out.pdf").read_bytes() == DATA
    got = other.ok("download", "report.ldshare", "--key", key, "-o", "-").stdout
    assert got == DATA
    r = other.ok("download", "report.ldshare", "--json", env={"LIVEDATA_SHARE_KEY": key})
    assert r.json()["name"] == "report.pdf" and r.json()["bytes"] == len(DATA)
    assert (other.cwd / "report.pdf").read_bytes() == DATA
    assert not (tmp_path / "stranger").exists()  # no vault, no index, no config made

    # Neither the vault's store, its index nor its journal holds the secret or the data key.
    needles = secrets_of(key, envelope_of(share_file))
    home = Path(shared.env["LIVEDATA_HOME"])
    assert_nowhere(needles, [p.read_bytes() for p in home.rglob("*") if p.is_file()])
    listed = shared.ok("share", "ls", "--json").json()["shares"]
    assert [s["id"] for s in listed] == [made["id"]] and listed[0]["path"] == "docs/report.pdf"


def test_wrong_missing_key_and_tampering(shared: Cli, tmp_path: Path) -> None:
    key = shared.ok("share", "docs/report.pdf", "--out", "r.ldshare", "--json").json()["key"]
    good = (shared.cwd / "r.ldshare").read_bytes()
    other = stranger(shared, tmp_path)
    target = other.cwd / "r.ldshare"
    target.write_bytes(good)

    assert_one_line_error(other("download", "r.ldshare", "-o", "out"), 4)
    changed = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    r = other("download", f"r.ldshare#{changed}", "-o", "out")
    assert_one_line_error(r, 4)
    assert "does not open" in r.stderr
    assert_one_line_error(other("download", "r.ldshare#short", "-o", "out"), 4)

    n = 12 + int.from_bytes(good[8:12], "big")
    for where in (n - 5, n + 200, len(good) - 1):  # the sealed manifest, the data, the last tag
        bad = bytearray(good)
        bad[where] ^= 1
        target.write_bytes(bytes(bad))
        assert_one_line_error(other("download", f"r.ldshare#{key}", "-o", "out"), 5)
    target.write_bytes(good + b"x")
    assert_one_line_error(other("download", f"r.ldshare#{key}", "-o", "out"), 5)
    target.write_bytes(good[:-100])
    assert_one_line_error(other("download", f"r.ldshare#{key}", "-o", "out"), 5)
    assert not (other.cwd / "out").exists()
    assert not [p for p in other.cwd.iterdir() if p.name.endswith(".part")]


def test_expiry_with_a_movable_clock_and_password(shared: Cli, tmp_path: Path) -> None:
    made = shared.ok(
        "share", "docs/report.pdf", "--expires", "1h", "--password", "--out", "p.ldshare", "--json",
        env={"LIVEDATA_SHARE_PASSWORD": "open sesame"},
    ).json()
    key = made["key"]
    assert made["password"] is True
    other = stranger(shared, tmp_path)
    (other.cwd / "p.ldshare").write_bytes((shared.cwd / "p.ldshare").read_bytes())
    link = f"p.ldshare#{key}"

    r = other("download", link, "-o", "out")
    assert_one_line_error(r, 4)
    assert "password" in r.stderr
    assert_one_line_error(other("download", link, "-o", "out", env={"LIVEDATA_SHARE_PASSWORD": "open sesam"}), 4)
    other.ok("download", link, "-o", "out", env={"LIVEDATA_SHARE_PASSWORD": "open sesame"})
    assert (other.cwd / "out").read_bytes() == DATA

    later = str(time.time() + 2 * 3600)
    r = other("download", link, "-o", "out2", env={"LIVEDATA_SHARE_PASSWORD": "open sesame", "LIVEDATA_TESTONLY_NOW": later})
    assert_one_line_error(r, 7)
    assert "expired" in r.stderr
    state = shared.ok("share", "ls", "--json", env={"LIVEDATA_TESTONLY_NOW": later}).json()["shares"][0]["state"]
    assert state == "expired"
    assert_nowhere(secrets_of(key, envelope_of(shared.cwd / "p.ldshare"), "open sesame"),
                   [p.read_bytes() for p in Path(shared.env["LIVEDATA_HOME"]).rglob("*") if p.is_file()])


def test_ls_revoke_audit_and_a_second_machine_sees_them(shared: Cli, tmp_path: Path) -> None:
    r = shared("share", "docs/report.pdf", "--max-downloads", "3")
    assert_one_line_error(r, 2)
    assert "API store" in r.stderr
    assert_one_line_error(shared("share", "nope.txt"), 3)
    assert_one_line_error(shared("share", "docs/report.pdf", "--expires", "soon"), 2)
    for too_long in ("999999999999d", "36501d", "99999999w"):  # no share, nothing journalled
        assert_one_line_error(shared("share", "docs/report.pdf", "--expires", too_long, "--out", "x.ldshare"), 2)
    assert not (shared.cwd / "x.ldshare").exists()
    a = shared.ok("share", "docs/report.pdf", "--json").json()
    assert (shared.cwd / "report.pdf.ldshare").exists()
    assert_one_line_error(shared("share", "docs/report.pdf"), 2)  # would overwrite the share file
    b = shared.ok("share", "docs/report.pdf", "--out", "b.ldshare", "--json").json()
    out = shared.ok("share", "revoke", a["id"], "--json").json()
    assert out["state"] == "revoked" and out["id"] == a["id"]
    assert_one_line_error(shared("share", "revoke", a["id"]), 2)
    assert_one_line_error(shared("share", "revoke", "0000"), 3)
    text = shared.ok("share", "ls").out
    assert a["id"] in text and "revoked" in text and "active" in text

    events = shared.ok("audit", "--json").json()
    actions = [(e["action"], e["path"]) for e in events]
    assert actions.count(("share", "docs/report.pdf")) == 2
    assert ("share-revoke", "docs/report.pdf") in actions

    # Another home on the same store lists the same shares, from the journal.
    other = Cli({**shared.env, "LIVEDATA_HOME": str(tmp_path / "home2")}, shared.cwd)
    other.ok("init", "--store", str(Path(shared.env["LIVEDATA_HOME"]) / "store"))
    states = {s["id"]: s["state"] for s in other.ok("share", "ls", "--json").json()["shares"]}
    assert states == {a["id"]: "revoked", b["id"]: "active"}


# -- S3 store: presigned links ---------------------------------------------------------
@pytest.fixture
def s3_shared(cli: Cli, moto_url: str, bucket: str) -> Cli:
    aws_env(cli, moto_url)
    cli.ok("init", "--store", f"s3://{bucket}/v")
    write(cli.cwd / "report.pdf", DATA)
    cli.ok("upload", "report.pdf")
    return cli


def _fetch_envelope(link: str) -> bytes:
    import httpx

    return httpx.get(link.partition("#")[0]).content


def test_s3_link_opens_for_a_stranger_expires_and_revokes(
    s3_shared: Cli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    made = s3_shared.ok("share", "report.pdf", "--expires", "2h", "--json").json()
    link, key = made["link"], made["key"]
    assert link.startswith("http") and link.endswith("#" + key) and "X-Amz-Signature" in link
    assert made["location"] == f"shares/{made['id']}"

    other = stranger(s3_shared, tmp_path)
    other.ok("download", link, "-o", "got.pdf")
    assert (other.cwd / "got.pdf").read_bytes() == DATA
    assert not (tmp_path / "stranger").exists()

    # A changed fragment, a missing one, and the link after its expiry.
    changed = link[:-5] + ("A" if link[-5] != "A" else "B") + link[-4:]
    assert_one_line_error(other("download", changed, "-o", "x"), 4)
    assert_one_line_error(other("download", link.partition("#")[0], "-o", "x"), 4)
    later = str(time.time() + 3 * 3600)
    r = other("download", link, "-o", "x", env={"LIVEDATA_TESTONLY_NOW": later})
    assert_one_line_error(r, 7)
    assert "expired" in r.stderr

    # The bucket never holds the secret or the data key.
    needles = secrets_of(key, _fetch_envelope(link))
    blobs = [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in all_keys(s3, bucket)]
    assert_nowhere(needles, blobs)

    s3_shared.ok("share", "revoke", link)  # the link itself names the share
    assert f"v/shares/{made['id']}" not in all_keys(s3, bucket)
    r = other("download", link, "-o", "x")
    assert_one_line_error(r, 7)
    assert "revoked" in r.stderr
    assert s3_shared.ok("share", "ls", "--json").json()["shares"][0]["state"] == "revoked"


def test_s3_password_and_refused_options(s3_shared: Cli, tmp_path: Path) -> None:
    r = s3_shared("share", "report.pdf", "--max-downloads", "2")
    assert_one_line_error(r, 2)
    assert "API store" in r.stderr
    assert_one_line_error(s3_shared("share", "report.pdf", "--expires", "8d"), 2)
    assert_one_line_error(s3_shared("share", "report.pdf", "--out", "r.ldshare"), 2)
    made = s3_shared.ok(
        "share", "report.pdf", "--password", "--json", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"}
    ).json()
    other = stranger(s3_shared, tmp_path)
    assert_one_line_error(other("download", made["link"], "-o", "x"), 4)
    assert_one_line_error(other("download", made["link"], "-o", "x", env={"LIVEDATA_SHARE_PASSWORD": "pw-2"}), 4)
    other.ok("download", made["link"], "-o", "x", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"})
    assert (other.cwd / "x").read_bytes() == DATA


# -- API store: the server enforces limits -------------------------------------------------
@pytest.fixture
def api_shared(cli: Cli, tmp_path: Path, livedata_env: dict[str, str]) -> Iterator[tuple[Cli, Any]]:
    from pgserver import ServerProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
    clock = tmp_path / "server-clock"
    clock.write_text(str(time.time()))
    env.update(livedata_env, LIVEDATA_HOME=str(tmp_path / "srv"), LIVEDATA_TESTONLY_CLOCK_FILE=str(clock))
    srv = ServerProcess([], env)
    srv.home = tmp_path / "srv"  # type: ignore[attr-defined]
    srv.clock = clock  # type: ignore[attr-defined]
    try:
        account = {"LIVEDATA_PASSWORD": "a long account password"}
        cli.ok("register", "--server", srv.url, "--email", "ada@example.com", env=account)
        cli.ok("login", "--server", srv.url, "--email", "ada@example.com", env=account)
        cli.ok("init", "--store", srv.url)
        write(cli.cwd / "report.pdf", DATA)
        cli.ok("upload", "report.pdf")
        yield cli, srv
    finally:
        srv.stop()


def test_api_link_limit_revoke_and_the_server_never_sees_keys(api_shared: tuple[Cli, Any], tmp_path: Path) -> None:
    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--max-downloads", "2", "--expires", "1h", "--json").json()
    link, key = made["link"], made["key"]
    assert link == f"{srv.url}/s/{made['location']}#{key}" and made["store"] == "api"

    other = stranger(cli, tmp_path)
    changed = link[:-5] + ("A" if link[-5] != "A" else "B") + link[-4:]
    assert_one_line_error(other("download", changed, "-o", "x"), 4)  # the manifest check: no download counted
    assert_one_line_error(other("download", link.partition("#")[0], "-o", "x"), 4)
    r = other("download", link, "-o", "x", env={"LIVEDATA_TESTONLY_NOW": str(time.time() + 7200)})
    assert_one_line_error(r, 7)
    other.ok("download", link, "-o", "one.pdf")
    assert (other.cwd / "one.pdf").read_bytes() == DATA
    listed = cli.ok("share", "ls", "--json").json()["shares"][0]
    assert listed["downloads"] == 1 and listed["state"] == "active"
    other.ok("download", link, "-o", "two.pdf")
    r = other("download", link, "-o", "three.pdf")
    assert_one_line_error(r, 7)
    assert "used up" in r.stderr
    assert cli.ok("share", "ls", "--json").json()["shares"][0]["state"] == "used_up"

    second = cli.ok("share", "report.pdf", "--json").json()
    other.ok("download", second["link"], "-o", "again.pdf")
    assert second["location"] != second["id"]
    cli.ok("share", "revoke", second["location"])  # the id in the link
    r = other("download", second["link"], "-o", "revoked.pdf")
    assert_one_line_error(r, 7)
    assert "revoked" in r.stderr
    third = cli.ok("share", "report.pdf", "--json").json()
    assert cli.ok("share", "revoke", third["link"], "--json").json()["id"] == third["id"]  # the whole link
    assert_one_line_error(cli("share", "revoke", third["link"]), 2)  # already revoked
    assert_one_line_error(cli("share", "revoke", f"{srv.url}/s/nosuchshare"), 3)

    srv.stop()  # flush the database, then search everything the server keeps (and its log)
    envelope = base64.b64decode(_public_manifest(cli, made))
    needles = secrets_of(key, envelope)
    assert_nowhere(needles, [p.read_bytes() for p in Path(srv.home).rglob("*") if p.is_file()])
    assert_nowhere(needles, [srv.log().encode()])


def test_api_server_enforces_expiry_on_its_own_clock(api_shared: tuple[Cli, Any], tmp_path: Path) -> None:
    """Not the client's check: the recipient's clock is untouched, the server's moves."""
    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--expires", "1h", "--json").json()
    other = stranger(cli, tmp_path)
    srv.clock.write_text(str(float(srv.clock.read_text()) + 1800))
    other.ok("download", made["link"], "-o", "early.pdf")
    srv.clock.write_text(str(float(srv.clock.read_text()) + 3600))
    r = other("download", made["link"], "-o", "late.pdf")
    assert_one_line_error(r, 7)
    assert "expired" in r.stderr
    assert not (other.cwd / "late.pdf").exists()
    assert cli.ok("share", "ls", "--json").json()["shares"][0]["state"] == "expired"


def _public_manifest(cli: Cli, made: dict[str, Any]) -> str:
    """The sealed manifest as the server stores it (read from the vault side's index-free view)."""
    import sqlite3

    home = Path(cli.env["LIVEDATA_HOME"]).parent / "srv"
    for db in home.rglob("*.sqlite*"):
        try:
            row = sqlite3.connect(db).execute("SELECT manifest FROM shares WHERE id = ?", (made["location"],)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row:
            return str(row[0])
    raise AssertionError("the server's database holds no such share")


def test_api_password_is_checked_by_the_server_and_locks(api_shared: tuple[Cli, Any], tmp_path: Path) -> None:
    cli, _srv = api_shared
    made = cli.ok("share", "report.pdf", "--password", "--json", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"}).json()
    other = stranger(cli, tmp_path)
    link = made["link"]
    r = other("download", link, "-o", "x")
    assert_one_line_error(r, 4)
    assert "password" in r.stderr
    bare = link.partition("#")[0] + "#" + made["key"].split(".")[0]  # the secret without its password part
    assert_one_line_error(other("download", bare, "-o", "x", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"}), 4)
    other.ok("download", link, "-o", "ok.pdf", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"})
    assert (other.cwd / "ok.pdf").read_bytes() == DATA
    for _ in range(4):  # with the bare link's attempt, five failures: the server's limit
        assert_one_line_error(other("download", link, "-o", "x", env={"LIVEDATA_SHARE_PASSWORD": "wrong"}), 4)
    r = other("download", link, "-o", "x", env={"LIVEDATA_SHARE_PASSWORD": "pw-1"})
    assert_one_line_error(r, 7)
    assert "locked" in r.stderr
    assert cli.ok("share", "ls", "--json").json()["shares"][0]["state"] == "locked"


NODE_DRIVER = """
if (!globalThis.crypto) globalThis.crypto = require("crypto").webcrypto;  // Node 18
const { openShare } = require(process.argv[2]);
const [origin, id, key, out] = process.argv.slice(3);
openShare(origin, id, key).then((got) => {
  require("fs").writeFileSync(out, Buffer.concat(got.parts.map((p) => Buffer.from(p))));
  console.log(JSON.stringify({ name: got.name, mime: got.mime }));
}, (e) => { console.error(e.message); process.exit(3); });
"""


def test_api_link_page_decrypts_with_webcrypto(api_shared: tuple[Cli, Any], tmp_path: Path) -> None:
    """The page's script, run by Node's WebCrypto against the real server (no browser here)."""
    import subprocess

    import httpx

    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--json").json()
    sid, key = made["location"], made["key"]
    page = httpx.get(f"{srv.url}/s/{sid}")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert key not in page.text
    script = tmp_path / "share.js"
    script.write_text(httpx.get(f"{srv.url}/s/share.js").text)
    driver = tmp_path / "driver.js"
    driver.write_text(NODE_DRIVER)

    def node(k: str, out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["node", str(driver), str(script), srv.url, sid, k, str(tmp_path / out)],
                              capture_output=True, text=True, timeout=60)

    r = node(key, "page.pdf")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "page.pdf").read_bytes() == DATA and '"name":"report.pdf"' in r.stdout
    changed = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    r = node(changed, "bad.pdf")
    assert r.returncode == 3 and "does not open" in r.stderr and not (tmp_path / "bad.pdf").exists()
    cli.ok("share", "revoke", made["id"])
    r = node(key, "gone.pdf")
    assert r.returncode == 3 and "revoked" in r.stderr


def test_api_link_opens_in_headless_chromium(api_shared: tuple[Cli, Any], tmp_path: Path) -> None:
    """A recipient without livedata: Debian's Chromium opens the link, the page saves the file."""
    from playwright.sync_api import sync_playwright

    cli, srv = api_shared
    made = cli.ok("share", "report.pdf", "--max-downloads", "1", "--json").json()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.goto(made["link"])
            # The manifest is opened in the page first: name, size and what is left, before any download.
            page.wait_for_selector("#name:text-is('report.pdf')")  # no eval: the page's CSP forbids it
            facts = page.text_content("#facts") or ""
            assert "1.0 MiB" in facts and "1 download left" in facts and "until" in facts, facts
            with page.expect_download(timeout=60_000) as download:
                page.click("#get")
            download.value.save_as(tmp_path / "browser.pdf")
            assert download.value.suggested_filename == "report.pdf"
            page.wait_for_selector("#status:has-text('Saved')")
            # The limit holds for browsers too: a second click is refused by the server.
            again = context.new_page()
            again.goto(made["link"])  # the page says so before anything is clicked, and offers no download
            again.wait_for_selector("#status:has-text('used up')")
            assert again.is_disabled("#get")
        finally:
            browser.close()
    assert (tmp_path / "browser.pdf").read_bytes() == DATA
    assert made["key"] not in srv.log()


def test_the_recipe_for_a_share_file_is_quoted_and_names_are_escaped(vault_cli: Cli) -> None:
    """A vault name is chosen by whoever wrote it (another writer of a shared
    store): pasted, the printed recipe must run livedata and nothing else, and
    the name must not reach the terminal raw."""
    import shlex

    name = "a'$(touch PWNED)'b.txt"
    write(vault_cli.cwd / name, "hi")
    vault_cli.ok("upload", name)
    r = vault_cli.ok("share", name)
    recipe = next(line for line in r.stderr.splitlines() + r.out.splitlines() if "livedata download" in line)
    assert shlex.split(recipe.strip())[:2] == ["livedata", "download"]
    assert shlex.split(recipe.strip())[2].startswith(str(vault_cli.cwd / name) + ".ldshare#") or \
        shlex.split(recipe.strip())[2].startswith(name + ".ldshare#"), recipe
    odd = os.fsdecode(b"x\x1b]0;owned\x07y\nz\xff.md")
    write(vault_cli.cwd / "odd.md", "hi")
    vault_cli.ok("upload", "odd.md", "--as", odd)
    r = vault_cli.ok("share", odd, "--out", str(vault_cli.cwd / "s.ldshare"))
    assert "\x1b" not in r.stderr + r.out and "x\\x1b]0;owned\\x07y\\nz\\xff.md" in r.stderr + r.out
    assert vault_cli.ok("share", odd, "--out", str(vault_cli.cwd / "s2.ldshare"), "--json").json()["path"] == (
        "x\x1b]0;owned\x07y\nz\\xff.md"
    )


def test_a_share_password_with_a_line_break_is_refused(vault_cli: Cli) -> None:
    """A recipient's prompt gives one line: such a password could never be typed."""
    write(vault_cli.cwd / "a.txt", "hi")
    vault_cli.ok("upload", "a.txt")
    r = vault_cli("share", "a.txt", "--password", "--out", "a.ldshare", env={"LIVEDATA_SHARE_PASSWORD": "line1\nline2"})
    assert_one_line_error(r, 2)
    assert "line break" in r.stderr and not (vault_cli.cwd / "a.ldshare").exists()


@pytest.mark.parametrize("field, value", [("kdf", "x"), ("kdf", []), ("kdf", {"alg": "argon2id"}), ("salt", "00"), ("salt", "zz")])
def test_a_share_header_rewritten_is_an_integrity_error(field: str, value: object) -> None:
    """The header of a share file is in the clear: whatever it is changed to,
    opening the share is exit 5 or 4, never an unexpected error."""
    import json

    from livedata_cli.errors import IntegrityError, ShareKeyError

    secret = os.urandom(32)
    blob = sc.seal_manifest(secret, "s1", {"file": "x"}, "pw1")
    n = int.from_bytes(blob[4:6], "big")
    public = json.loads(blob[6 : 6 + n])
    public[field] = value
    pub = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    changed = blob[:4] + len(pub).to_bytes(2, "big") + pub + blob[6 + n :]
    with pytest.raises((IntegrityError, ShareKeyError)):
        sc.open_manifest(secret, changed, "pw1")
    hint = sc.password_hint(blob).split(".")
    hint[1] = "00"
    with pytest.raises(ShareKeyError):
        sc.check_from_hint(secret, ".".join(hint), "pw1")
