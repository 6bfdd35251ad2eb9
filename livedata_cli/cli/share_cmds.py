"""``livedata share``: share one file by a link whose key only the recipient holds.

``livedata share REF`` is ``livedata share create REF``: the group runs
``create`` whenever its first word is not one of its commands.  Opening a
share is ``livedata download LINK`` (:func:`download_share`).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from livedata_cli.cli.common import (
    Env,
    JsonOpt,
    NoHeaderOpt,
    QuietOpt,
    group_with_default,
    human_size,
    human_time,
    one_line,
    open_vault,
    setup,
    table,
)
from livedata_cli.errors import UsageError
from livedata_cli.localfs import download_target, refuse_existing
from livedata_cli.names import shown, to_local

if TYPE_CHECKING:
    from livedata_cli.stores.api import ApiStore
    from livedata_cli.vault.core import Vault

app = typer.Typer(
    cls=group_with_default("create"),
    no_args_is_help=True,
    help="Share a file by a link (or share file) that opens with a key printed once.\n\n"
    "'livedata share REF' is short for 'livedata share create REF'.",
)


def _new_password(env: Env) -> str:
    from livedata_cli.share_recipient import PASSWORD_ENV

    found = os.environ.get(PASSWORD_ENV)
    if found is not None:
        secret = found
    elif env.can_prompt():
        secret = env.prompt("Share password: ")
        if secret != env.prompt("Repeat the share password: "):
            raise UsageError("the two passwords differ; nothing was shared")
    else:
        from livedata_cli.errors import AuthError

        raise AuthError(f"--password needs {PASSWORD_ENV} or a terminal to ask on")
    if not secret:
        raise UsageError("an empty share password is not allowed")
    return one_line(secret, "share password")  # a recipient's prompt gives one line


@app.command()
def create(
    ref: Annotated[str, typer.Argument(help="Vault path (newest version) or version id of the file to share.")],
    expires: Annotated[
        str, typer.Option("--expires", "-e", help="How long the share opens: 30m, 1h, 7d (default), 2w.")
    ] = "7d",
    max_downloads: Annotated[
        int | None,
        typer.Option("--max-downloads", help="Downloads allowed (needs a vault on a Live-Data API store)."),
    ] = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password", help="Also require a password (asked twice, or LIVEDATA_SHARE_PASSWORD)."
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Share file to write (folder stores; default: NAME.ldshare here)."),
    ] = None,
    version: Annotated[int | None, typer.Option("--version", "-V", help="Version number (1 is the oldest).")] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Share with this account on the same server, sealed to her public key (no link key)."),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Share one file: prints the link (or writes the share file) and its key, once.

    Example: livedata share report.pdf --expires 1h --password --out report.ldshare
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import share_links

    seconds = share_links.parse_duration(expires)
    if to is not None:
        _create_to(env, ref, to, seconds, max_downloads, version, password, out)
        return
    secret = _new_password(env) if password else None
    page: str | None = None
    with open_vault(env) as vault, vault.journal_lock("share"):
        made = share_links.create(
            vault, ref, expires_in=seconds, max_downloads=max_downloads, password=secret, out=out, version=version
        )
        if made.share.kind == "api":
            page = _check_page(env, cast("ApiStore", vault.store), made.share.location)  # an "api" share
    at = share_links.now()
    if env.json:
        extra = {} if page is None else {"page_sha256": page}
        env.emit({**made.share.to_json(at), "key": made.key, "link": made.link, "size": made.size, **extra})
        return
    if page is not None:
        env.say(f"the browser page of this link has SHA-256 {page}: a recipient can compare it with what she is")
        env.say("  served (curl -s LINK-without-#KEY | sha256sum); 'livedata download LINK' is the trusted way")
    s = made.share
    if s.kind == "file":
        env.say(f"wrote {shown(s.location)} ({human_size(made.size)}): {shown(s.path)}, until {human_time(s.expires)}")
        env.say("the key below is shown once; send it apart from the file. The recipient runs:")
        env.say(f"  livedata download {shown(shlex.quote(made.link))}")  # a name cannot break out of the quotes
    else:
        env.say(f"shared {shown(s.path)} ({human_size(made.size)}) until {human_time(s.expires)}; id {s.id}")
        env.say("the link below holds the key and is shown once:")
    env.out(made.link if s.kind != "file" else made.key)


def _check_page(env: Env, store: ApiStore, location: str) -> str:
    """The SHA-256 of this version's share page; a warning when the server serves another."""
    import hashlib

    from livedata_cli.sharepage import page_sha256

    expected = page_sha256()
    served = store.share_page(location)
    if served is None:
        env.warn("could not fetch the server's browser page for this link to compare it")
    elif hashlib.sha256(served).hexdigest() != expected:
        env.warn(
            f"{store.url} serves a browser page for this link that differs from this livedata's "
            f"(SHA-256 {hashlib.sha256(served).hexdigest()[:16]}…): recipients should use 'livedata download'"
        )
    return expected


def _create_to(
    env: Env, ref: str, to: str, seconds: int, max_downloads: int | None, version: int | None,
    password: bool, out: Path | None,
) -> None:
    """``share REF --to EMAIL``: sealed to her pinned public key; she opens it with her vault."""
    from livedata_cli.vault import share_links, share_to_account

    if password or out is not None:
        raise UsageError("--to shares are opened by her own vault: --password and --out do not apply")
    with open_vault(env) as vault:
        sent = share_to_account.create(vault, ref, to, expires_in=seconds, max_downloads=max_downloads, version=version)
    made, s = sent.created, sent.created.share
    if env.json:
        env.emit({
            **s.to_json(share_links.now()), "to": sent.to, "fingerprint": sent.pin.fingerprint,
            "first_use": sent.pin.first_use, "link": made.link, "size": made.size,
        })
        return
    if sent.pin.first_use:
        env.say(f"{sent.to}'s public key, seen for the first time: {sent.pin.fingerprint}")
        env.say("  pinned here; compare it with her ('livedata share key' on her side shows hers)")
    env.say(f"shared {shown(s.path)} ({human_size(made.size)}) with {sent.to} until {human_time(s.expires)}; id {s.id}")
    env.say(f"she finds it in 'livedata share ls --incoming' and runs: livedata download {made.link}")
    env.out(made.link)


@app.command("key")
def key(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Show this account's public key fingerprint and signing key fingerprint (made and published on first use), for others to compare.

    Example: livedata share key
    """
    env = setup(json_, quiet)
    from livedata_cli.crypto import box
    from livedata_cli.vault import share_to_account

    with open_vault(env) as vault:
        private, public = share_to_account.key_pair(vault)
    signing = box.signing_public(private)
    if env.json:
        env.emit({
            "public_key": public.hex(), "fingerprint": box.fingerprint(public),
            "signing_key": signing.hex(), "signing_fingerprint": box.fingerprint(signing),
        })
        return
    env.out(box.fingerprint(public))
    env.say(f"signing key (the shares you send are signed with it): {box.fingerprint(signing)}")


@app.command("ls")
def ls(
    incoming: Annotated[
        bool, typer.Option("--incoming", help="Shares other accounts addressed to you (API stores).")
    ] = False,
    no_header: NoHeaderOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the shares this vault made (id, file, created, expires, downloads, state), or with --incoming those addressed to you.

    Example: livedata share ls --incoming
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import share_links

    if incoming:
        _ls_incoming(env, no_header)
        return

    with open_vault(env) as vault:
        shares = share_links.list_shares(vault)
    at = share_links.now()
    if env.json:
        env.emit({"shares": [s.to_json(at) for s in shares]})
        return
    if not shares:
        env.say("no shares ('livedata share FILE' makes one)")
        return
    rows = []
    for s in shares:
        used = "-" if s.downloads is None else str(s.downloads)
        allowed = "" if s.max_downloads is None else f"/{s.max_downloads}"
        rows.append((s.id, s.path, human_time(s.created), human_time(s.expires), f"{used}{allowed}",
                     s.state(at) + ("  password" if s.password else "")))
    table(env, ("ID", "FILE", "CREATED", "EXPIRES", "DOWNLOADS", "STATE"), rows, no_header=no_header)


def _ls_incoming(env: Env, no_header: bool) -> None:
    from livedata_cli.vault import share_to_account

    with open_vault(env) as vault:
        found = share_to_account.incoming(vault)
    if env.json:
        env.emit({"shares": [i.to_json() for i in found]})
        return
    if not found:
        env.say("no shares addressed to you")
        return
    rows = []
    for i in found:
        who = f"{i.sender} (verified, key {i.sender_key})" if i.verified else f"{i.sender} (NOT VERIFIED)"
        rows.append((i.id, i.name, human_size(i.size), who, human_time(i.created), human_time(i.expires), i.state))
    table(env, ("ID", "NAME", "SIZE", "FROM", "CREATED", "EXPIRES", "STATE"), rows, no_header=no_header)


@app.command("revoke")
def revoke(
    share_id: Annotated[
        str, typer.Argument(metavar="ID", help="The share's id as 'livedata share ls' shows it, the id in its link, or the link.")
    ],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Revoke a share: its link stops opening (a share file already sent is only marked).

    Example: livedata share revoke 3f2a9c0d1e4b5a67
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import share_links

    with open_vault(env) as vault, vault.journal_lock("share revoke"):
        s = share_links.revoke(vault, share_id)
    if env.json:
        env.emit(s.to_json(share_links.now()))
        return
    if s.kind == "file":
        env.say(
            f"share {s.id} of {s.path} is marked revoked; a share file already handed out "
            "still opens with its key until it expires"
        )
    else:
        env.say(f"share {s.id} of {s.path} revoked: its link no longer opens")


def download_share(
    env: Env, ref: str, *, key: str | None, output: str | None, overwrite: bool
) -> None:
    """``livedata download`` of a share file or link: no vault, account or keyring needed."""
    from livedata_cli import share_recipient

    parsed = share_recipient.parse_ref(ref)
    assert parsed is not None

    def password() -> str | None:
        found = os.environ.get(share_recipient.PASSWORD_ENV)
        if found is not None:
            return found
        if env.can_prompt():
            return env.prompt("Share password: ")
        return None

    opened = share_recipient.open_share(parsed, key, password)
    if output == "-":
        opened.write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        if env.json:
            env.warn("livedata: --json ignored: the file went to stdout")
        return
    target = download_target(output, to_local(opened.name))
    if target.exists() and not overwrite:
        refuse_existing(target)
    with env.progress(opened.size, "download") as bar:
        n = opened.download_to(target, bar)
    if env.json:
        env.emit({**opened.to_json(), "output": str(target), "bytes": n})
        return
    env.say(f"downloaded {shown(opened.name)} ({human_size(n)}) to {shown(str(target))}")


def write_incoming(env: Env, vault: Vault, ref: str, *, output: str | None, overwrite: bool) -> None:
    """``livedata download`` of a share addressed to this account (its id, or its link): opened by her vault."""
    from livedata_cli.vault import share_to_account

    opened, sender, pin = share_to_account.open_incoming(vault, ref)
    if pin.first_use:
        env.say(f"{sender}'s signing key, seen for the first time: {pin.fingerprint}")
        env.say("  pinned here; compare it with theirs ('livedata share key' on their side shows it)")
    if output == "-":
        opened.write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        share_to_account.received(vault, opened, sender, pin, "stdout")
        return
    target = download_target(output, to_local(opened.name))
    if target.exists() and not overwrite:
        refuse_existing(target)
    with env.progress(opened.size, "download") as bar:
        n = opened.download_to(target, bar)
    share_to_account.received(vault, opened, sender, pin, str(target))
    if env.json:
        env.emit({
            **opened.to_json(), "from": sender, "verified": True, "sender_key": pin.fingerprint,
            "first_use": pin.first_use, "output": str(target), "bytes": n,
        })
        return
    env.say(
        f"downloaded {shown(opened.name)} ({human_size(n)}) from {sender} (verified by pinned key {pin.fingerprint}) "
        f"to {shown(str(target))}"
    )
