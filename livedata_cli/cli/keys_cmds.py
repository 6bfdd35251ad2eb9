"""Key commands: passwd, add, ls, rm, rotate.  No data is re-encrypted by any
of them: a slot wraps the same master key under another secret, and rotate
rewraps data keys (small records), never data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from livedata_cli.cli.common import (
    JsonOpt,
    NoHeaderOpt,
    QuietOpt,
    human_time,
    open_vault,
    setup,
    table,
)
from livedata_cli.errors import UsageError

app = typer.Typer(help="Manage the vault's key slots: passphrases and recovery keys.", no_args_is_help=True)


@app.command()
def passwd(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Change the passphrase of the slot it opens (the data is not re-encrypted).

    The current passphrase comes from the usual sources; the new one from
    LIVEDATA_NEW_PASSPHRASE in scripts, or is asked twice on a terminal.
    Example: livedata keys passwd
    """
    env = setup(json_, quiet)
    from livedata_cli.keys.slots import replace_passphrase
    from livedata_cli.keys.unlock import open_with_secret

    with open_vault(env) as vault:
        current = vault.unlocker.secret("Current passphrase: ")
        master, old = open_with_secret(vault.store, vault.cfg, current)
        new_slot = replace_passphrase(vault.store, vault.cfg, master, old, _new_secret(env))
    if env.json:
        env.emit({"slot": new_slot.slot_id, "changed": True})
    else:
        env.say(f"passphrase changed (slot {new_slot.slot_id})")


@app.command()
def add(
    recovery: Annotated[bool, typer.Option("--recovery", help="Print a new recovery key instead.")] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", metavar="PATH",
            help="Write a new random key to PATH (mode 0600, never overwritten) for a cron or CI job: "
            "give it as LIVEDATA_PASSPHRASE_FILE. It opens the vault without the passphrase stretch, "
            "and 'keys rm SLOT' revokes it alone.",
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add a second passphrase, or (--recovery) print a recovery key to keep offline,
    or (--key-file) write a key for an unattended job.

    Example: livedata keys add --key-file ~/.config/livedata/backup.key
    """
    env = setup(json_, quiet)
    from livedata_cli.keys.slots import make_slot, new_recovery_key

    if recovery and key_file is not None:
        raise UsageError("--recovery and --key-file exclude each other")
    with open_vault(env) as vault:
        master = vault.master_key
        random_key = recovery or key_file is not None
        secret = new_recovery_key() if random_key else _new_secret(env)
        slot = make_slot(vault.vault_id, master, secret, "recovery" if random_key else "passphrase")
        if key_file is not None:
            _write_key_file(key_file, secret)
        try:
            vault.store.put_bytes(slot.key, slot.to_bytes(), exclusive=True)
        except BaseException:
            if key_file is not None:
                key_file.unlink(missing_ok=True)
            raise
    if env.json:
        extra = {"recovery_key": secret} if recovery else {"key_file": str(key_file)} if key_file else {}
        env.emit({"slot": slot.slot_id, "kind": slot.kind, **extra})
    elif recovery:
        env.out(secret)
        env.say(f"recovery key added (slot {slot.slot_id}): keep it offline; it opens the vault like a passphrase")
    elif key_file is not None:
        env.say(f"key written to {key_file} (slot {slot.slot_id}): use LIVEDATA_PASSPHRASE_FILE={key_file}")
    else:
        env.say(f"passphrase added (slot {slot.slot_id})")


def _write_key_file(path: Path, secret: str) -> None:
    """The key, readable by its owner only, in a file that did not exist.  Missing
    parent folders are made 0700 (``~/.config/livedata`` on a fresh home)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: a key file is never overwritten") from None
    except OSError as e:
        raise UsageError(f"cannot create {path}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


@app.command("ls")
def ls_(no_header: NoHeaderOpt = False, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the key slots (no secret is shown).

    Example: livedata keys ls
    """
    env = setup(json_, quiet)
    from livedata_cli import settings
    from livedata_cli.keys.slots import list_slots
    from livedata_cli.stores import open_store

    store = open_store(settings.VaultSettings.load().store)
    slots = list_slots(store)
    if env.json:
        env.emit([{"slot": s.slot_id, "kind": s.kind, "kdf": s.kdf, "created": s.created} for s in slots])
        return
    rows = [(s.slot_id, s.kind, human_time(s.created), ", ".join(f"{k}={v}" for k, v in s.kdf.items()) or "-")
            for s in slots]
    table(env, ("SLOT", "KIND", "CREATED", "KEY DERIVATION"), rows, no_header=no_header)


@app.command("rm")
def rm_(
    slot_id: Annotated[str, typer.Argument(help="Slot id, as 'livedata keys ls' shows it.")],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove a key slot; the last one that opens the vault cannot be removed.

    Example: livedata keys rm pass-0a1b2c3d4e5f
    """
    env = setup(json_, quiet)
    from livedata_cli.keys.slots import remove_slot

    with open_vault(env) as vault:
        vault.unlock()  # only someone who can open the vault removes a way in
        remove_slot(vault.store, slot_id)
    if env.json:
        env.emit({"slot": slot_id, "removed": True})
    else:
        env.say(f"removed slot {slot_id}")


def _new_secret(env: object) -> str:
    import os

    from livedata_cli.cli.common import ENV, one_line
    from livedata_cli.errors import UsageError

    value = os.environ.get("LIVEDATA_NEW_PASSPHRASE")
    if value is not None:
        if not value:
            raise UsageError("LIVEDATA_NEW_PASSPHRASE is empty")
        return one_line(value)
    if not ENV.can_prompt():
        from livedata_cli.errors import NoPassphrase

        raise NoPassphrase("a new passphrase is needed: set LIVEDATA_NEW_PASSPHRASE or run on a terminal")
    secret = ENV.prompt("New passphrase: ")
    if not secret or secret != ENV.prompt("Repeat the new passphrase: "):
        raise UsageError("the new passphrases are empty or differ; nothing was changed")
    return secret


@app.command()
def rotate(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Replace the vault's master key; data keys are rewrapped, no data is re-encrypted.

    The passphrase given now (from the usual sources) opens the new key; other
    passphrases, recovery keys and key files stop working (add them again with
    'keys add'), and so do keys cached in keyrings of other machines: they ask
    for the passphrase once.  Safe to interrupt: run it again to finish.
    Example: livedata keys rotate
    """
    env = setup(json_, quiet)
    from livedata_cli.vault.rotation import rotate as run

    with open_vault(env) as vault, vault.lock(exclusive=True, command="keys rotate"):
        done = run(vault)
        vault.events.add("keys-rotate", "", detail=f"{done.previous_key_id} -> {done.key_id}")
    if env.json:
        env.emit(
            {
                "key_id": done.key_id,
                "previous_key_id": done.previous_key_id,
                "records": done.records,
                "journals_compacted": done.journals_compacted,
                "slots_removed": done.slots_removed,
            }
        )
    else:
        env.say(
            f"rotated: key {done.previous_key_id} -> {done.key_id}; {done.records} record(s) rewrapped, "
            f"{done.journals_compacted} journal(s) compacted, {done.slots_removed} old slot(s) removed"
        )
