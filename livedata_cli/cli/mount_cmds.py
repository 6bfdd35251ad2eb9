"""mount: the vault as a read-only file system."""

from __future__ import annotations

from typing import Annotated

import typer

from livedata_cli.cli.common import JsonOpt, QuietOpt, open_vault, parse_when, setup


def mount(
    mountpoint: Annotated[str, typer.Argument(help="An empty folder to mount the vault on.")],
    prefix: Annotated[str, typer.Argument(help="Only paths under this prefix (default: the whole vault).")] = "",
    at: Annotated[
        str | None, typer.Option("--at", help="The tree as it was at this time (ISO date/time or an age: 7d).")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Mount the vault read-only (FUSE) until Ctrl-C or 'fusermount3 -u MOUNTPOINT'.

    The newest version of every file, and every version under .versions/PATH/N;
    files are decrypted as they are read, in bounded memory, every byte authenticated
    (a damaged segment reads as an I/O error). Files with a file password do not open.
    Example: livedata mount ~/vault-view photos/ --at 2026-11-20
    """
    env = setup(json_, quiet)
    from livedata_cli import mount as fs
    from livedata_cli.localfs import clean_vault_path

    when = parse_when(at, "--at") if at else None
    with open_vault(env) as vault:
        vault.sync()
        vault.unlock()  # asked now, on the terminal, not at the first read
        env.say(f"livedata: vault mounted read-only on {mountpoint}; Ctrl-C or 'fusermount3 -u {mountpoint}' ends it")
        fs.mount(vault, mountpoint, clean_vault_path(prefix, folder=True) if prefix else "", when)


def register(app: typer.Typer) -> None:
    app.command()(mount)
