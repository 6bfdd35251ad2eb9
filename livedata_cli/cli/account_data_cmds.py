"""``livedata account export | delete``: take your data from the server, or erase your account."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from livedata_cli.cli.account_cmds import ServerOpt, _ask, _code, _password, _server
from livedata_cli.cli.common import JsonOpt, QuietOpt, human_size, setup


def export(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The zip file to write (replaced if it exists).")
    ],
    server: ServerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download everything the server holds about your account as one zip.

    The zip holds your profile, sessions, file metadata, shares and audit log
    as JSON, and your files' encrypted bytes laid out as a folder store: after
    'unzip my-data.zip -d x', 'livedata init --store x/store' attaches to the
    vault and 'livedata download' restores files with the vault passphrase.
    Example: livedata account export -o my-data.zip
    """
    env = setup(json_, quiet)
    from livedata_cli.remote import takeout

    url = _server(server)
    with env.progress(None, "export") as bar:
        manifest = takeout.export_account(url, output, bar)
    dest = output.expanduser().absolute()
    counts = manifest.get("counts", {})
    store = str(manifest.get("store", "store/")).rstrip("/")
    data = {
        "server": url,
        "path": str(dest),
        "size": dest.stat().st_size,
        "files": counts.get("files", 0),
        "blobs": counts.get("blobs", 0),
        "blob_bytes": counts.get("bytes", 0),
        "shares": counts.get("shares", 0),
        "audit": counts.get("audit", 0),
        "sessions": counts.get("sessions", 0),
        "store": store,
    }
    if env.json:
        env.emit(data)
        return
    env.say(
        f"exported {data['files']} file(s), {data['shares']} share(s) and {data['audit']} audit record(s) "
        f"to {dest} ({human_size(int(data['size']))})"
    )
    env.say(f"restore with: unzip {dest.name} -d DIR && livedata init --store DIR/{store}")


def delete(
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask to type the email (scripts).")
    ] = False,
    code: Annotated[
        str | None,
        typer.Option("--code", help="A current code when MFA is on (or LIVEDATA_TOTP, or asked)."),
    ] = None,
    recovery_code: Annotated[
        str | None,
        typer.Option("--recovery-code", help="A single-use recovery code instead of the code."),
    ] = None,
    server: ServerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete your account on the server with all its files, shares and sessions, for good.

    Needs the password (LIVEDATA_PASSWORD or asked), a code when MFA is on,
    and a confirmation: the account's email typed on a terminal, or --yes.
    This home then forgets its tokens for the server.  Export first if you
    want to keep anything: 'livedata account export -o my-data.zip'.
    Example: LIVEDATA_PASSWORD=... livedata account delete --yes
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import AuthError, UsageError
    from livedata_cli.remote import account, takeout

    url = _server(server)
    profile = account.account_info(url)["profile"]
    email = str(profile.get("email", ""))
    if not yes:
        if not env.can_prompt():
            raise UsageError(
                "deleting an account cannot be undone: give --yes, or run on a terminal to confirm"
            )
        env.warn(
            f"This deletes the account {email} on {url}, every file, share and session in it. It cannot be undone."
        )
        if _ask(env, "Type the account's email to confirm: ").lower() != email.lower():
            raise UsageError("the email typed differs; nothing was deleted")
    password = _password(env)
    totp = None
    if profile.get("mfa_enabled") and not recovery_code:
        totp = _code(env, code)
        if not totp:
            raise AuthError(
                "this account has MFA on: give --code, LIVEDATA_TOTP or --recovery-code, or run on a terminal"
            )
    erased = takeout.delete_account(url, password, totp, recovery_code)
    data = {
        "server": url,
        "email": email,
        "deleted": True,
        "deletion_id": erased.get("deletion_id"),
        "files": erased.get("files", 0),
        "blobs": erased.get("blobs", 0),
        "bytes": erased.get("bytes", 0),
        "shares": erased.get("shares", 0),
        "sessions": erased.get("sessions", 0),
        "tokens_forgotten": True,
    }
    if env.json:
        env.emit(data)
        return
    env.say(f"account {email} deleted from {url}")
    env.out(f"files     {data['files']}")
    env.out(f"blobs     {data['blobs']} ({human_size(int(data['bytes']))})")
    env.out(f"shares    {data['shares']}")
    env.out(f"sessions  {data['sessions']}")


def register(account_app: typer.Typer) -> None:
    account_app.command("export")(export)
    account_app.command("delete")(delete)
