"""Accounts on a Live-Data server: register, log in (with MFA), log out, MFA
set-up, devices and the server's audit log.

Nothing here prints or reads the terminal: the CLI passes the email,
password and one-time code in, and renders what comes back.  The HTTP side
is :mod:`livedata_cli.remote.client`, the tokens :mod:`livedata_cli.remote.tokens`.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livedata_cli.errors import AuthError, LivedataError
from livedata_cli.remote import tokens
from livedata_cli.remote.client import Client, unexpected
from livedata_cli.remote.tokens import Tokens

# ``(server, email)`` → the password and a way to get the TOTP code, or None: set by
# the CLI when it can ask someone at a terminal, so that an ended session logs in again.
Relogin = Callable[[str, str], "tuple[str, Callable[[], str | None]] | None"]


def set_relogin(ask: Relogin | None) -> None:
    """How to log in again when a session has ended (None: exit 4, ``livedata login``).
    The client reaches :func:`login` through ``tokens.set_log_in_again``: it cannot import
    this module, which is built on it."""
    if ask is None:
        tokens.set_log_in_again(None)
        return

    def again(server: str, email: str) -> bool:
        answer = ask(server, email)
        if answer is None:
            return False
        password, code = answer
        login(server, email, password, code)
        return True

    tokens.set_log_in_again(again)


# -- account operations -----------------------------------------------------------------
@dataclass(frozen=True)
class LoginResult:
    server: str
    email: str
    stored_in: str  # keyring or file
    mfa: bool


def register(server: str, email: str, password: str, first_name: str = "", last_name: str = "") -> dict[str, Any]:
    """Create an account; returns the server's profile of it."""
    c = Client(server)
    try:
        resp = c.request(
            "POST", "/auth/register", what="register", auth=False, ok=(201,),
            json_body={"email": email, "password": password, "first_name": first_name, "last_name": last_name},
        )
        return c.answer(resp, "register")
    finally:
        c.close()


def login(
    server: str,
    email: str,
    password: str,
    code: Callable[[], str | None],
    *,
    recovery_code: str | None = None,
    device_name: str | None = None,
) -> LoginResult:
    """Log in and store the tokens.  ``code`` is asked only when the account has MFA on,
    and not on a device the server trusts (``livedata account trust``)."""
    import socket

    c = Client(server)
    try:
        record = c.tokens.load_device(c.server)
        name = device_name or str(record.get("name") or "") or socket.gethostname()
        device: dict[str, Any] = {"device_name": name[:200]}
        if record.get("trust"):
            device["device_trust"] = str(record["trust"])
        resp = c.request("POST", "/auth/login", what="login", auth=False, ok=(200,),
                         json_body={"email": email, "password": password, **device})
        body = c.answer(resp, "login")
        mfa = bool(body.get("mfa_required"))
        if mfa:
            answer: dict[str, Any] = {"mfa_token": body["mfa_token"], **device}
            if recovery_code:
                answer["recovery_code"] = recovery_code
            else:
                totp = code()
                if not totp:
                    raise AuthError(
                        "this account has MFA on: give the 6-digit code (LIVEDATA_TOTP, --code, or a terminal)"
                    )
                answer["code"] = totp
            resp = c.request("POST", "/auth/mfa/challenge", what="MFA code", auth=False, ok=(200,), json_body=answer)
            body = c.answer(resp, "MFA code")
        with c.shaped("login"):
            tokens = Tokens(
                c.server, email.strip().lower(), str(body["access_token"]), str(body["refresh_token"]),
                time.time() + float(body.get("expires_in", 900)),
            )
        where = c.set_tokens(tokens)
        if record.get("name") != name:
            c.tokens.save_device(c.server, {**record, "name": name})
        return LoginResult(c.server, tokens.email, where, mfa)
    finally:
        c.close()


@dataclass(frozen=True)
class LogoutResult:
    revoked: bool  # the server ended the session
    was_logged_in: bool
    not_told: str | None = None  # why the server was not told (unreachable, failed): its session lives on


def logout(server: str) -> LogoutResult:
    """End the session on the server, and forget the tokens here even when the
    server cannot be told (the session then ends when its tokens expire)."""
    import httpx

    c = Client(server)
    c.relogin = False  # no password asked just to end a session that has ended
    try:
        had = c.logged_in()
        if had is None:
            return LogoutResult(False, False)
        revoked, not_told = False, None
        if had.source != "environment":
            try:
                c.request("POST", "/auth/logout", what="logout", ok=(204,))
                revoked = True
            except AuthError:
                pass  # the session had ended already
            except LivedataError as e:
                not_told = e.message
            except httpx.HTTPError as e:
                not_told = f"{type(e).__name__}: {e}"
        c.forget()
        return LogoutResult(revoked, True, not_told)
    finally:
        c.close()


def mfa_setup(server: str, password: str) -> dict[str, str]:
    """Start TOTP setup (the server wants the password again): ``secret`` and ``otpauth_uri``,
    to confirm with :func:`mfa_verify`."""
    return _call(  # type: ignore[no-any-return]
        server, "POST", "/auth/mfa/setup", "MFA setup", json_body={"password": password}
    )


def mfa_verify(server: str, code: str, password: str) -> list[str]:
    """Confirm TOTP setup with a code and the password; returns the single-use recovery codes."""
    body = _call(server, "POST", "/auth/mfa/verify", "MFA code", json_body={"code": code, "password": password})
    return list(body.get("recovery_codes", []))


def mfa_disable(server: str, password: str, code: str) -> None:
    _call(server, "POST", "/auth/mfa/disable", "MFA disable", json_body={"password": password, "code": code})


def account_info(server: str) -> dict[str, Any]:
    """Profile, storage and where the tokens live."""
    c = Client(server)
    try:
        profile = c.get_json("/users/me", what="account")
        storage = c.get_json("/users/me/storage", what="storage")
        counts = ("used_bytes", "quota_bytes", "free_bytes", "files")
        if not isinstance(profile.get("email"), str) or not all(
            isinstance(storage.get(k, 0), int | None) and not isinstance(storage.get(k), bool) for k in counts
        ):
            raise unexpected(c.server, "account", "no email, or counts that are not numbers")
        return {
            "server": c.server,
            "profile": profile,
            "storage": storage,
            "tokens": c.current().source,
        }
    finally:
        c.close()


def devices(server: str) -> list[dict[str, Any]]:
    """The account's signed-in (or still trusted) devices; ``current`` marks this one."""
    items = _call(server, "GET", "/users/me/devices", "devices").get("items", [])
    if not isinstance(items, list) or not all(_is_device(i) for i in items):
        raise unexpected(Client(server).server, "devices", "a list of devices that is not one")
    return items


def _is_device(item: object) -> bool:
    def moment(v: object) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    return isinstance(item, dict) and all(moment(item.get(k)) for k in ("created_at", "last_seen_at", "trusted_until"))


def revoke_device(server: str, device_id: str) -> None:
    """Sign a device out: its tokens stop working at once, and its trust ends."""
    _call(server, "DELETE", f"/users/me/devices/{urllib.parse.quote(device_id, safe='')}", f"device {device_id}")


def revoke_other_devices(server: str) -> int:
    """Sign out every device but this one; returns how many."""
    return int(_call(server, "POST", "/users/me/devices/revoke-others", "devices").get("revoked", 0))


def trust_device(server: str) -> dict[str, Any]:
    """Have the server trust this device, and keep its secret with the device record."""
    c = Client(server)
    try:
        body = c.request("POST", "/users/me/devices/current/trust", what="trust").json()
        c.tokens.save_device(c.server, {**c.tokens.load_device(c.server), "trust": body["device_trust"]})
        return {"id": body["id"], "trusted_until": body["trusted_until"]}
    finally:
        c.close()


def audit_logs(
    client: Client, *, since: float | None = None, limit: int | None = None, action: str | None = None
) -> list[dict[str, Any]]:
    """The account's server-side audit records, newest first (back to ``since``)."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        params: dict[str, Any] = {"page": page, "per_page": 200}
        if action:
            params["action"] = action
        body = client.get_json("/users/me/audit-logs", what="server audit log", params=params)
        items = body.get("items", [])
        for item in items:
            if since is not None and float(item.get("created_at", 0)) < since:
                return out
            out.append(item)
            if limit is not None and len(out) >= limit:
                return out
        if len(items) < 200 or page * 200 >= int(body.get("total", 0)):
            return out
        page += 1


def _call(server: str, method: str, path: str, what: str, *, json_body: Any = None) -> Any:
    c = Client(server)
    try:
        resp = c.request(method, path, what=what, json_body=json_body)
        return c.answer(resp, what) if resp.status_code != 204 and resp.content else {}
    finally:
        c.close()
