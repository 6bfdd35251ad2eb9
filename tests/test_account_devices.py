"""Devices on a real ``livedata server``: listing and revoking sessions, trusted devices, notification mail.

Each home is one device of the same person; a real aiosmtpd server receives
the server's mail.  The commands run in the test's process (the server is a
process of its own), the same code and outputs without an interpreter start each.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from test_api_store import PASSWORD, other_home, same_keys, server, tokens_file  # noqa: F401
from test_server_e2e import mailbox  # noqa: F401

from conftest import Cli, assert_one_line_error
from pgserver import Mailbox, free_port, postgres  # noqa: F401

pytestmark = pytest.mark.inprocess

LOGIN = {"LIVEDATA_PASSWORD": PASSWORD}


def smtp(box: Mailbox) -> list[str]:
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(box.port)]


def sign_up(cli: Cli, url: str, address: str, device: str) -> None:
    cli.ok("register", "--server", url, "--email", address, env=LOGIN)
    cli.ok("login", "--server", url, "--email", address, "--device-name", device, env=LOGIN)


def login(cli: Cli, url: str, address: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    return cli(
        "login", "--server", url, "--email", address, "--json", *extra, env={**LOGIN, **(env or {})}
    )


def tokens(cli: Cli) -> dict[str, Any]:
    (only,) = json.loads(tokens_file(cli).read_text()).values()
    return only  # type: ignore[no-any-return]


def bearer(cli: Cli) -> list[str]:
    """The access and refresh tokens of a home: never in any mail."""
    t = tokens(cli)
    return [t["access_token"], t["refresh_token"]]


def devices(cli: Cli, url: str) -> list[dict[str, Any]]:
    out = cli.ok("account", "devices", "--server", url, "--json").json()
    same_keys("account devices", out)
    return out["devices"]  # type: ignore[no-any-return]


def current_id(cli: Cli, url: str) -> str:
    (mine,) = [d["id"] for d in devices(cli, url) if d["current"]]
    return mine  # type: ignore[no-any-return]


def mails(box: Mailbox) -> list[tuple[str, str]]:
    """(subject, body) of each message received."""
    out = []
    for raw in box.messages:
        msg = email.message_from_string(raw, policy=email.policy.default)
        out.append((str(msg["Subject"]), msg.get_content()))  # type: ignore[attr-defined]
    return out


def wait_for_mail(box: Mailbox, count: int) -> list[tuple[str, str]]:
    """Mail is sent after the answer: wait for it a little."""
    deadline = time.monotonic() + 10
    while len(box.messages) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and nothing more arrives
    assert len(box.messages) == count, [s for s, _ in mails(box)]
    return mails(box)


def assert_no_secrets(body: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in body
    assert not re.search(r"https?://\S*[?#]", body), body  # no link carries a token
    for must in (
        "When:",
        "Device:",
        "IP address:",
        "User agent:",
        "livedata account devices",
        "change your password",
    ):
        assert must in body, must


def db_args(database: str, request: pytest.FixtureRequest) -> list[str]:
    return (
        []
        if database == "sqlite"
        else ["--db", request.getfixturevalue("postgres").create_database()]
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_devices_are_listed_one_revoked_by_the_other_and_the_rest_at_once(
    cli: Cli,
    server: Any,  # noqa: F811
    mailbox: Mailbox,  # noqa: F811
    database: str,
    request: pytest.FixtureRequest,
) -> None:
    srv = server(*smtp(mailbox), *db_args(database, request))
    url = srv.url
    desk, laptop, tablet = cli, other_home(cli, "laptop"), other_home(cli, "tablet")
    sign_up(desk, url, "ada@example.com", "desk")
    assert wait_for_mail(mailbox, 0) == []  # an account's first sign-in is not news
    assert login(laptop, url, "ada@example.com", "--device-name", "laptop").code == 0

    # The sign-in from a new device is mailed; the same device signing in again is not.
    ((subject, body),) = wait_for_mail(mailbox, 1)
    assert "new" in subject.lower() and "To: ada@example.com" in mailbox.messages[0]
    assert (
        "Device:      laptop" in body and "IP address:  127.0.0.1" in body and "livedata/" in body
    )
    assert_no_secrets(body, [PASSWORD, *bearer(laptop), *bearer(desk)])

    seen = devices(desk, url)
    assert sorted(d["name"] for d in seen) == ["desk", "laptop"]
    assert [d["name"] for d in seen if d["current"]] == ["desk"]
    assert [d["name"] for d in devices(laptop, url) if d["current"]] == ["laptop"]
    for d in seen:
        assert re.fullmatch(r"livedata/\S+ \(.+\)", d["user_agent"]), d["user_agent"]
        assert (
            d["ip"] == d["last_ip"] == "127.0.0.1"
            and d["signed_in"] is True
            and d["trusted"] is False
        )
        assert d["last_seen_at"] >= d["created_at"] > time.time() - 300
    table = desk.ok("account", "devices", "--server", url).out.splitlines()
    assert len(table) == len(seen)  # piped: the rows alone, no header line
    (star,) = [line for line in table if line.startswith("*")]
    assert "desk" in star and "127.0.0.1" in star and "livedata/" in star

    # Revoked from the desk: the laptop's tokens stop at once, its next command says to log in again.
    lap_id = next(d["id"] for d in seen if d["name"] == "laptop")
    lap = tokens(laptop)
    out = desk.ok("account", "devices", "revoke", lap_id, "--server", url, "--json").json()
    assert out == {"server": url, "revoked": 1}
    same_keys("account devices revoke", out)
    with httpx.Client(base_url=url + "/api/v1") as c:
        assert (
            c.get(
                "/users/me", headers={"Authorization": f"Bearer {lap['access_token']}"}
            ).status_code
            == 401
        )
        assert (
            c.post("/auth/refresh-token", json={"refresh_token": lap["refresh_token"]}).status_code
            == 401
        )
    r = laptop("account", "--server", url)
    assert_one_line_error(r, 4)
    assert "log in again" in r.stderr and "livedata login --server" in r.stderr
    assert [d["name"] for d in devices(desk, url)] == ["desk"]

    # Not one of this account's devices: 404, exit 3.  Neither or both of ID and --others: exit 2.
    sign_up(tablet, url, "eve@example.com", "eve's tablet")
    eve_id = current_id(tablet, url)
    assert_one_line_error(desk("account", "devices", "revoke", eve_id, "--server", url), 3)
    assert_one_line_error(desk("account", "devices", "revoke", "0" * 32, "--server", url), 3)
    assert tablet.ok("account", "--server", url, "--json").json()["email"] == "eve@example.com"
    for args in ([], [eve_id, "--others"]):
        assert_one_line_error(desk("account", "devices", "revoke", *args, "--server", url), 2)

    # --others: every device but this one.
    assert login(laptop, url, "ada@example.com").code == 0  # the kept name: not new, no mail
    assert login(tablet, url, "ada@example.com", "--device-name", "tablet").code == 0
    assert [s for s, _ in wait_for_mail(mailbox, 2)][1] == subject
    assert len(devices(desk, url)) == 3
    out = desk.ok("account", "devices", "revoke", "--others", "--server", url, "--json").json()
    assert out == {"server": url, "revoked": 2}
    assert [d["name"] for d in devices(desk, url)] == ["desk"]
    for other in (laptop, tablet):
        assert_one_line_error(other("account", "--server", url), 4)


def test_last_seen_is_written_at_most_once_a_minute(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server()
    sign_up(cli, srv.url, "bo@example.com", "desk")
    db = sqlite3.connect(srv.home / "server" / "server.sqlite")

    def set_seen(t: float) -> None:
        db.execute("UPDATE sessions SET last_seen_at = ?, last_ip = 'old'", (t,))
        db.commit()

    def seen() -> tuple[float, str]:
        return db.execute("SELECT last_seen_at, last_ip FROM sessions").fetchone()  # type: ignore[no-any-return]

    recent = time.time() - 10
    set_seen(recent)
    cli.ok("account", "--server", srv.url)
    assert seen() == (recent, "old")  # seen 10 s ago: no write
    set_seen(time.time() - 120)
    cli.ok("account", "--server", srv.url)
    t, ip = seen()
    assert ip == "127.0.0.1" and t > time.time() - 30
    db.close()


class Codes:
    """TOTP codes, each of a time step not used yet (the server refuses a step twice)."""

    def __init__(self, secret: str) -> None:
        self.totp, self.last = pyotp.TOTP(secret), 0
        self.given: list[str] = []

    def next(self) -> str:
        while True:
            now, left = int(time.time() // 30), 30 - time.time() % 30
            step = max(now - 1, self.last + 1)
            if step <= now + 1 and (step >= now or left > 4):
                self.last = step
                self.given.append(self.totp.at(step * 30))
                return self.given[-1]
            time.sleep(0.5)


def test_trusted_device_skips_the_code_until_revoked_and_mfa_policy_always(
    cli: Cli,
    server: Any,  # noqa: F811
    mailbox: Mailbox,  # noqa: F811
) -> None:
    port = free_port()
    srv = server(*smtp(mailbox), "--port", str(port))
    url = srv.url
    started = [srv]

    home = srv.home / "server"  # the first server's database, blobs and keys, kept by each restart

    def restart(old: Any, *extra: str) -> Any:
        old.stop()
        db = ("--db", f"sqlite:///{home / 'server.sqlite'}", "--store", str(home / "blobs"), "--keys", str(home / "keys.json"))
        again = server(*smtp(mailbox), "--port", str(port), *db, *extra)
        assert again.url == url
        started.append(again)
        return again

    desk, laptop = cli, other_home(cli, "laptop")
    sign_up(desk, url, "ada@example.com", "desk")
    setup = desk.ok("mfa", "setup", "--server", url, "--json", env={"LIVEDATA_PASSWORD": PASSWORD}).json()
    codes = Codes(setup["secret"])
    recovery = desk.ok("mfa", "verify", codes.next(), "--server", url, "--json", env={"LIVEDATA_PASSWORD": PASSWORD}).json()[
        "recovery_codes"
    ]
    ((subject, body),) = wait_for_mail(mailbox, 1)
    assert "turned on" in subject and "Device:      desk" in body
    sent = 1

    # Untrusted: the code is needed.  Trusted: a new login from that home skips it.
    assert_one_line_error(login(laptop, url, "ada@example.com", "--device-name", "laptop"), 4)
    code = {"LIVEDATA_TOTP": codes.next()}
    assert (
        login(laptop, url, "ada@example.com", "--device-name", "laptop", env=code).json()["mfa"]
        is True
    )
    sent += 1  # a new device
    trust = laptop.ok("account", "trust", "--server", url, "--json").json()
    same_keys("account trust", trust)
    assert trust["id"] == current_id(laptop, url)
    assert 29.9 * 86400 < trust["trusted_until"] - time.time() <= 30 * 86400
    record = Path(laptop.env["LIVEDATA_HOME"]) / "device.json"
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    (kept,) = json.loads(record.read_text()).values()
    secret = kept["trust"]
    laptop.ok("logout", "--server", url)
    assert login(laptop, url, "ada@example.com").json()["mfa"] is False  # no code asked
    (lap,) = [d for d in devices(desk, url) if d["name"] == "laptop"]
    assert (
        lap["trusted"] is True and lap["signed_in"] is True
    )  # the trust followed to the new session
    assert abs(lap["trusted_until"] - trust["trusted_until"]) < 1
    with httpx.Client(base_url=url + "/api/v1") as c:  # the secret is this account's only
        r = c.post(
            "/auth/login",
            json={"email": "ada@example.com", "password": PASSWORD, "device_trust": "x" * 43},
        )
        assert r.json()["mfa_required"] is True

    # A password change drops every device's trust (and signs the others out).
    new_password = "a new account password"
    with httpx.Client(base_url=url + "/api/v1") as c:
        r = c.post(
            "/users/me/password",
            json={"current_password": PASSWORD, "new_password": new_password, "code": codes.next()},
            headers={"Authorization": f"Bearer {tokens(desk)['access_token']}"},
        )
        assert r.status_code == 204
    sent += 1
    # The same server again (same database, same URL): a new process starts its
    # login budget (10 a minute per account) afresh, which this test does not measure.
    srv = restart(srv)
    pw = {"LIVEDATA_PASSWORD": new_password}
    assert_one_line_error(login(laptop, url, "ada@example.com", env=pw), 4)
    assert (
        login(laptop, url, "ada@example.com", "--recovery-code", recovery[0], env=pw).json()["mfa"]
        is True
    )
    laptop.ok("account", "trust", "--server", url)

    # Revoking the device ends its trust.
    desk.ok("account", "devices", "revoke", current_id(laptop, url), "--server", url)
    assert_one_line_error(login(laptop, url, "ada@example.com", env=pw), 4)
    assert login(laptop, url, "ada@example.com", "--recovery-code", recovery[1], env=pw).code == 0
    laptop.ok("account", "trust", "--server", url)

    # mfa_policy=always: the same server (same database, same URL) asks for the code on trusted devices too.
    srv = restart(srv, "--mfa-policy", "always")
    laptop.ok("logout", "--server", url)
    assert_one_line_error(login(laptop, url, "ada@example.com", env=pw), 4)
    assert (
        login(laptop, url, "ada@example.com", "--recovery-code", recovery[2], env=pw).json()["mfa"]
        is True
    )
    (lap,) = [d for d in devices(desk, url) if d["name"] == "laptop"]
    assert lap["trusted"] is True  # still trusted, only the policy asks more

    # Turning MFA off drops the trust too.
    desk.ok("mfa", "disable", "--code", codes.next(), "--server", url, env=pw)
    sent += 1
    assert not any(d["trusted"] for d in devices(desk, url))

    got = wait_for_mail(mailbox, sent)
    subjects = [s for s, _ in got]
    assert subjects == [
        "livedata: two-factor login (mfa) was turned on",
        "livedata: new sign-in from a device not seen before",
        "livedata: the password was changed",
        "livedata: two-factor login (mfa) was turned off",
    ]
    secrets = [
        PASSWORD,
        new_password,
        secret,
        setup["secret"],
        *recovery,
        *codes.given,
        *bearer(desk),
        *bearer(laptop),
    ]
    for _, text in got:
        assert_no_secrets(text, secrets)
    assert not any(secret in s.log() for s in started)


def test_login_works_when_the_mail_server_is_down(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server(
        "--smtp-host", "127.0.0.1", "--smtp-port", str(free_port())
    )  # nothing listens there
    laptop = other_home(cli, "laptop")
    sign_up(cli, srv.url, "cy@example.com", "desk")
    started = time.monotonic()
    assert (
        login(laptop, srv.url, "cy@example.com", "--device-name", "laptop").json()["mfa"] is False
    )
    assert time.monotonic() - started < 10
    assert laptop.ok("account", "--server", srv.url, "--json").json()["email"] == "cy@example.com"
    deadline = time.monotonic() + 10
    while "notification mail not sent" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    warnings = [line for line in srv.lines if "notification mail not sent" in line]
    assert len(warnings) == 1 and json.loads(warnings[0])["level"] in ("WARNING", "warning")


DEVICE_COLUMNS = [
    "device_name",
    "user_agent",
    "ip",
    "last_seen_at",
    "last_ip",
    "trusted_until",
    "trust_hash",
]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_migration_006_adds_the_device_columns_to_an_older_database(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from livedata_cli.server.db import Database

    url = (
        f"sqlite:///{tmp_path / 'old.sqlite'}"
        if database == "sqlite"
        else db_args(database, request)[1]
    )
    d = Database(url)
    d.migrate()
    with d.write() as conn:  # back to the schema before 006, with a signed-in session
        conn.exec_driver_sql("DROP INDEX ix_sessions_trust_hash")
        conn.exec_driver_sql("DROP INDEX ix_sessions_user")
        for col in DEVICE_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE sessions DROP COLUMN {col}")
        conn.exec_driver_sql("DELETE FROM schema_migrations WHERE name = '006_devices'")
        conn.exec_driver_sql(
            "INSERT INTO users (id, email, password_hash, quota_bytes, created_at, updated_at)"
            " VALUES ('u1', 'old@example.com', 'x', 1, 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO sessions (id, user_id, created_at) VALUES ('s1', 'u1', 1)"
        )
    assert d.pending() == ["006_devices"]
    assert d.migrate() == ["006_devices"]
    with d.read() as conn:
        have = {c["name"] for c in sa.inspect(conn).get_columns("sessions")}
        row = conn.exec_driver_sql(
            "SELECT id, device_name, ip, last_seen_at, trust_hash FROM sessions"
        ).one()
    assert set(DEVICE_COLUMNS) <= have
    assert tuple(row) == ("s1", None, None, None, None)
    assert d.migrate() == []
    d.dispose()
