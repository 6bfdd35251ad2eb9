"""File password commands: set, change, remove.  ``set`` and ``change``
re-encrypt every version of the file under fresh data keys (and delete the old
objects); ``remove`` rewraps the data keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from livedata_cli.cli.common import Env, JsonOpt, QuietOpt, open_vault, setup

app = typer.Typer(help="Protect single files with a file password, on top of the vault key.", no_args_is_help=True)

RefArg = Annotated[str, typer.Argument(help="Vault path (all its versions) or version id.")]


def _run(env: Env, ref: str, action: str, new_password: str | None) -> None:
    from livedata_cli.vault import file_passwords

    with open_vault(env) as vault, vault.lock():
        versions = file_passwords.set_file_password(vault, ref, action, new_password)
        copies = file_passwords.unprotected_copies(vault, versions) if action != "remove" else []
    path = versions[0].path
    result: dict[str, Any] = {
        "path": path,
        "action": action,
        "password": new_password is not None,
        "versions": len(versions),
        "unprotected_copies": copies,
    }
    if env.json:
        env.emit(result)
        return
    done = {"set": "password set", "change": "password changed", "remove": "password removed"}[action]
    how = "no data re-encrypted" if action == "remove" else "re-encrypted, old copies deleted"
    env.say(f"{done}: {path} ({len(versions)} version(s); {how})")
    if copies:
        env.warn(f"livedata: the same content is also stored without a password as: {', '.join(copies)}")


@app.command("set")
def set_(ref: RefArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Give a file a password: every version is re-encrypted under a new data key that needs it as well as the vault key.

    The password is asked twice on a terminal, or read from LIVEDATA_FILE_PASSWORD in scripts.
    Example: livedata password set will.pdf
    """
    env = setup(json_, quiet)
    _run(env, ref, "set", env.new_file_password())


@app.command()
def change(ref: RefArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Change a file's password: every version is re-encrypted, so the old password opens nothing left in the store.

    The current password comes from LIVEDATA_FILE_PASSWORD or a prompt; the new
    one from LIVEDATA_NEW_FILE_PASSWORD in scripts, or is asked twice on a terminal.
    Example: livedata password change will.pdf
    """
    env = setup(json_, quiet)
    _run(env, ref, "change", env.new_file_password("LIVEDATA_NEW_FILE_PASSWORD"))


@app.command()
def remove(ref: RefArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Remove a file's password: the vault key alone opens it again.

    The current password comes from LIVEDATA_FILE_PASSWORD or a prompt.
    Example: livedata password remove will.pdf
    """
    env = setup(json_, quiet)
    _run(env, ref, "remove", None)
