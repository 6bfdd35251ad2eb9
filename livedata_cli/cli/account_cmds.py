"""Account commands on a Live-Data server: register, login, logout, mfa, account.

The server comes from ``--server``, else the ``server`` setting (a profile,
``LIVEDATA_SERVER``), else the store of this home's vault when it is a
server.  Secrets come from the environment in scripts (``LIVEDATA_PASSWORD``,
``LIVEDATA_TOTP``) or are asked on a terminal; they are never options, so
they never sit in a shell history or a process list.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from livedata_cli.cli.common import (
    Env,
    JsonOpt,
    NoHeaderOpt,
    QuietOpt,
    human_size,
    human_time,
    setup,
    table,
)

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", "-s", metavar="URL",
        help="The Live-Data server, https://HOST (default: the 'server' setting, or the vault's store).",
    ),
]
EmailOpt = Annotated[
    str | None, typer.Option("--email", "-e", help="The account's email (default: the 'email' setting, or asked).")
]
PASSWORD_VAR = "LIVEDATA_PASSWORD"
TOTP_VAR = "LIVEDATA_TOTP"

mfa_app = typer.Typer(help="Two-factor login with a TOTP app: set up, confirm, turn off.", no_args_is_help=True)
account_app = typer.Typer(
    help="Your account on the server: 'livedata account' shows it; the subcommands manage it.",
)
devices_app = typer.Typer(
    help="The devices signed in to your account: 'livedata account devices' lists them; 'revoke' signs them out.",
)


# -- where, who, which secret -------------------------------------------------------------
def _server(given: str | None) -> str:
    from livedata_cli import settings
    from livedata_cli.errors import UsageError
    from livedata_cli.remote.client import is_server_url, normalize_server
    from livedata_cli.remote.tokens import TokenStore

    if given:
        return normalize_server(given)
    value = settings.setting("server")
    if value:
        return normalize_server(str(value))
    if settings.VaultSettings.exists():
        store = settings.VaultSettings.load().store
        if is_server_url(store):
            return normalize_server(store)
    known = TokenStore().servers()
    if len(known) == 1:
        return known[0]
    raise UsageError("which server? give --server https://HOST (or set it: livedata config set server URL)")


def _ask(env: Env, label: str) -> str:
    """A visible answer on the terminal (an email, a name)."""
    sys.stderr.write(label)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise typer.Abort()
    return line.strip()


def _email(env: Env, given: str | None) -> str:
    from livedata_cli import settings
    from livedata_cli.errors import UsageError

    email = given or settings.setting("email")
    if not email and env.can_prompt():
        email = _ask(env, "Email: ")
    if not email:
        raise UsageError("give --email (or set LIVEDATA_EMAIL, or the 'email' setting)")
    return str(email)


def _password(env: Env, *, twice: bool = False) -> str:
    from livedata_cli.errors import AuthError, UsageError

    value = os.environ.get(PASSWORD_VAR)
    if value:
        return value
    if not env.can_prompt():
        raise AuthError(f"no password: set {PASSWORD_VAR} or run on a terminal to be asked")
    password = env.prompt("Password: ")
    if twice and password != env.prompt("Repeat the password: "):
        raise UsageError("the two passwords differ; nothing was done")
    return password


def _code(env: Env, given: str | None = None) -> str | None:
    """A TOTP code: --code, LIVEDATA_TOTP, or asked on a terminal; None when there is no way."""
    if given:
        return given.strip()
    value = os.environ.get(TOTP_VAR, "").strip()
    if value:
        return value
    if env.can_prompt():
        return _ask(env, "Code from your authenticator app: ")
    return None


# -- commands ---------------------------------------------------------------------------
def register(
    server: ServerOpt = None,
    email: EmailOpt = None,
    first_name: Annotated[str, typer.Option("--first-name", help="Your first name (optional).")] = "",
    last_name: Annotated[str, typer.Option("--last-name", help="Your last name (optional).")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create an account on a Live-Data server; the password comes from LIVEDATA_PASSWORD or is asked twice.

    Example: livedata register --server https://vault.example.com --email ada@example.com
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    address = _email(env, email)
    profile = account.register(url, address, _password(env, twice=True), first_name, last_name)
    steps = [
        f"livedata login --server {url}",
        "livedata mfa setup",
        f"livedata init --store {url}",
    ]
    if env.json:
        env.emit({"server": url, **{k: profile.get(k) for k in ("id", "email", "first_name", "last_name")}, "next": steps})
        return
    env.say(f"account {profile.get('email', address)} created on {url}. Next:")
    for step in steps:
        env.say(f"  {step}")


def login(
    server: ServerOpt = None,
    email: EmailOpt = None,
    code: Annotated[
        str | None, typer.Option("--code", help="The 6-digit code when the account has MFA on (or LIVEDATA_TOTP).")
    ] = None,
    recovery_code: Annotated[
        str | None, typer.Option("--recovery-code", help="A single-use recovery code instead of the TOTP code.")
    ] = None,
    device_name: Annotated[
        str | None,
        typer.Option("--device-name", help="This device's name in 'account devices' (default: the host name; kept)."),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Log in; the tokens go to the OS keyring (else a 0600 file in the home). Asks the TOTP code when MFA is on.

    The password comes from LIVEDATA_PASSWORD in scripts, or is asked.
    Example: LIVEDATA_TOTP=123456 livedata login --server https://vault.example.com --email ada@example.com
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    address = _email(env, email)
    result = account.login(
        url, address, _password(env), lambda: _code(env, code), recovery_code=recovery_code, device_name=device_name
    )
    if env.json:
        env.emit({"server": result.server, "email": result.email, "mfa": result.mfa, "tokens": result.stored_in})
        return
    where = "the OS keyring" if result.stored_in == "keyring" else "a 0600 file in the home (no OS keyring)"
    env.say(f"logged in to {result.server} as {result.email}; tokens kept in {where}")


def logout(server: ServerOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """End the session on the server (its tokens stop working at once) and forget them here.

    Example: livedata logout
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    result = account.logout(url)
    if result.not_told is not None:
        env.warn(
            f"livedata: warning: {url} was not told ({result.not_told}); "
            "the tokens are forgotten here, the session ends on the server when they expire"
        )
    if env.json:
        env.emit({"server": url, "revoked": result.revoked, "was_logged_in": result.was_logged_in})
    elif not result.was_logged_in:
        env.say(f"not logged in to {url}")
    elif result.not_told is not None:
        env.say(f"logged out of {url} here")
    else:
        env.say(f"logged out of {url}" + ("" if result.revoked else " (the session had ended already)"))


@account_app.callback(invoke_without_command=True)
def account_cmd(
    ctx: typer.Context, server: ServerOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Show the account: profile, storage used of the quota, and whether MFA is on.

    Example: livedata account --server https://vault.example.com
    """
    if ctx.invoked_subcommand is not None:
        return
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    info = account.account_info(_server(server))
    p, s = info["profile"], info["storage"]
    data = {
        "server": info["server"],
        "id": p.get("id"),
        "email": p.get("email"),
        "first_name": p.get("first_name"),
        "last_name": p.get("last_name"),
        "mfa_enabled": p.get("mfa_enabled"),
        "used_bytes": s.get("used_bytes"),
        "quota_bytes": s.get("quota_bytes"),
        "free_bytes": s.get("free_bytes"),
        "files": s.get("files"),
        "tokens": info["tokens"],
    }
    if env.json:
        env.emit(data)
        return
    name = " ".join(x for x in (data["first_name"], data["last_name"]) if x)
    used, quota = int(data["used_bytes"] or 0), int(data["quota_bytes"] or 0)
    pct = f" ({100 * used / quota:.1f} %)" if quota else ""
    env.out(f"server   {data['server']}")
    env.out(f"account  {data['email']}" + (f" ({name})" if name else ""))
    env.out(f"storage  {human_size(used)} of {human_size(quota)} used{pct}, {data['files']} object(s)")
    env.out(f"MFA      {'on' if data['mfa_enabled'] else 'off: livedata mfa setup'}")


# -- devices ----------------------------------------------------------------------------
DEVICE_KEYS = ("id", "name", "created_at", "last_seen_at", "ip", "last_ip", "user_agent", "signed_in", "trusted",
               "trusted_until", "current")


@devices_app.callback(invoke_without_command=True)
def devices_cmd(
    ctx: typer.Context,
    server: ServerOpt = None,
    no_header: NoHeaderOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the devices signed in to your account (one per login); '*' marks this one.

    A device signed out but still trusted ('livedata account trust') is listed too, as "signed out".
    Example: livedata account devices
    """
    if ctx.invoked_subcommand is not None:
        return
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    items = [{k: d.get(k) for k in DEVICE_KEYS} for d in account.devices(url)]
    if env.json:
        env.emit({"server": url, "devices": items})
        return
    rows = []
    for d in items:
        trusted = f"until {human_time(d['trusted_until'])[:10]}" if d["trusted"] else "no"
        rows.append((
            "*" if d["current"] else "",
            str(d["id"]),
            _cell(d["name"]) + ("" if d["signed_in"] else " (signed out)"),
            human_time(d["created_at"]),
            human_time(d["last_seen_at"]),
            _cell(d["last_ip"] or d["ip"]),
            trusted,
            _cell(d["user_agent"]),
        ))
    table(env, ("", "ID", "NAME", "FIRST SEEN", "LAST SEEN", "IP", "TRUSTED", "USER AGENT"), rows, no_header=no_header)


def _cell(value: object) -> str:
    """Text the server stored for a client, safe for a terminal."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text) or "-"


@devices_app.command("revoke")
def devices_revoke(
    device_id: Annotated[str | None, typer.Argument(metavar="ID", help="The device to sign out (from 'account devices').")] = None,
    others: Annotated[bool, typer.Option("--others", help="Sign out every device but this one.")] = False,
    server: ServerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sign a device out (or all but this one with --others): its tokens stop working at once, its trust ends.

    Example: livedata account devices revoke 3f9c2a7e0b1d4c6e8a5f2b7d9e1c3a5b
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import UsageError
    from livedata_cli.remote import account

    if (device_id is None) == (not others):
        raise UsageError("give exactly one of: a device ID, or --others")
    url = _server(server)
    if device_id is not None:
        account.revoke_device(url, device_id)
        count, text = 1, f"device {device_id} signed out"
    else:
        count = account.revoke_other_devices(url)
        text = f"{count} other device(s) signed out"
    if env.json:
        env.emit({"server": url, "revoked": count})
    else:
        env.say(text)


@account_app.command("trust")
def trust(server: ServerOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Trust this device: later logins from it skip the MFA code (unless the server asks for it always).

    The trust lasts as long as the server allows (30 days by default) and ends
    when the device is revoked, the password changes or MFA is turned off.
    Example: livedata account trust
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    got = account.trust_device(url)
    if env.json:
        env.emit({"server": url, "id": got["id"], "trusted_until": got["trusted_until"]})
    else:
        env.say(f"this device is trusted by {url} until {human_time(got['trusted_until'])}")


# -- mfa --------------------------------------------------------------------------------
def qr_text(uri: str) -> str | None:
    """The otpauth URI as a QR code of terminal block characters (segno), or None without segno."""
    try:
        import segno
    except ImportError:
        return None
    import io

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


@mfa_app.command("setup")
def mfa_setup(server: ServerOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Turn on two-factor login: shows the otpauth URI and its QR code, then confirms with a code.

    Needs the account password (LIVEDATA_PASSWORD or asked). On a terminal the code is asked at
    once; otherwise confirm later with 'livedata mfa verify CODE'.
    Example: livedata mfa setup
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    password = _password(env)
    started = account.mfa_setup(url, password)
    uri, secret = started["otpauth_uri"], started["secret"]
    if not env.json:
        qr = qr_text(uri)
        env.say("Scan this with your authenticator app, or enter the secret by hand:")
        if qr is not None:
            env.say(qr.rstrip("\n"))
        env.say(f"  {uri}\n  secret: {secret}")
    code = _code(env) if env.can_prompt() and not env.json else None
    codes = account.mfa_verify(url, code, password) if code else []
    if env.json:
        env.emit({"server": url, "otpauth_uri": uri, "secret": secret, "mfa_enabled": bool(code), "recovery_codes": codes})
        return
    if not code:
        env.say("then confirm with: livedata mfa verify CODE")
        return
    _show_recovery(env, codes)


def _show_recovery(env: Env, codes: list[str]) -> None:
    env.say("MFA is on. Recovery codes (each works once instead of a code; keep them offline):")
    for c in codes:
        env.out(c)


@mfa_app.command("verify")
def mfa_verify(
    code: Annotated[str, typer.Argument(help="The 6-digit code your authenticator app shows now.")],
    server: ServerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Confirm 'mfa setup' with a current code and the password (LIVEDATA_PASSWORD or asked):
    MFA is on, and single-use recovery codes are printed.

    Example: livedata mfa verify 123456
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import account

    url = _server(server)
    codes = account.mfa_verify(url, code, _password(env))
    if env.json:
        env.emit({"server": url, "mfa_enabled": True, "recovery_codes": codes})
    else:
        _show_recovery(env, codes)


@mfa_app.command("disable")
def mfa_disable(
    code: Annotated[
        str | None, typer.Option("--code", help="A current code (or LIVEDATA_TOTP, or asked).")
    ] = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn two-factor login off; needs the password (LIVEDATA_PASSWORD or asked) and a current code.

    Example: livedata mfa disable --code 123456
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import AuthError
    from livedata_cli.remote import account

    url = _server(server)
    password = _password(env)
    totp = _code(env, code)
    if not totp:
        raise AuthError(f"a current code is needed: --code, {TOTP_VAR}, or a terminal")
    account.mfa_disable(url, password, totp)
    if env.json:
        env.emit({"server": url, "mfa_enabled": False})
    else:
        env.say(f"MFA is off for your account on {url}")


def register_commands(app: typer.Typer) -> None:
    app.command("register")(register)
    app.command("login")(login)
    app.command("logout")(logout)
    account_app.add_typer(devices_app, name="devices")
    app.add_typer(account_app, name="account")
    app.add_typer(mfa_app, name="mfa")
