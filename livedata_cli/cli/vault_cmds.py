"""Vault commands: init, lock, sync, verify."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from livedata_cli.cli.common import ENV, JsonOpt, QuietOpt, open_vault, setup


def init(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Folder or s3://BUCKET/PREFIX for the encrypted store (default: a folder inside LIVEDATA_HOME).",
        ),
    ] = None,
    kms_key: Annotated[
        str | None,
        typer.Option(
            "--kms-key",
            help="KMS key (id, ARN or alias/NAME) that holds the vault key: no passphrase, access is IAM on the key.",
        ),
    ] = None,
    kms_per_object: Annotated[
        bool,
        typer.Option(
            "--kms-per-object",
            help="With --kms-key: also wrap each file's data key with KMS GenerateDataKey (one KMS record per object).",
        ),
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create a vault, or attach to the vault already in --store and rebuild the index.

    Example: livedata init --store s3://team-bucket/vault --kms-key alias/livedata
    """
    env = setup(json_, quiet)
    from livedata_cli import settings
    from livedata_cli.vault.core import Vault

    vault, created = Vault.init(
        store, env.unlocker(), env.new_secret, kms_key=kms_key, kms_per_object=kms_per_object
    )
    try:
        count = vault.index.count()
        data = {
            "vault_id": vault.vault_id,
            "store": vault.store.url,
            "created": created,
            "versions": count,
            "home": str(settings.home()),
            "key_cached": vault.unlocker.cache.enabled and not vault.cfg.kms_key_id,
            "kms_key": vault.cfg.kms_key_id,
        }
    finally:
        vault.close()
    if env.json:
        env.emit(data)
    elif created:
        env.say(f"created vault {data['vault_id']} in {data['store']}")
    else:
        env.say(f"attached to vault {data['vault_id']} in {data['store']}: {count} version(s) indexed")


def lock(
    index: Annotated[
        bool,
        typer.Option("--index", help="Also encrypt the local index (names, tags, notes): search and ls then need the key."),
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Forget the cached vault key; the next command asks for the passphrase again.

    Example: livedata lock --index
    """
    env = setup(json_, quiet)
    from livedata_cli import settings
    from livedata_cli.keys.oskeyring import KeyCache

    saved = settings.VaultSettings.load()
    if index:
        from livedata_cli.index import at_rest

        path = settings.home() / settings.INDEX_FILE
        if not at_rest.is_locked(path):
            with open_vault(env) as vault:
                master = vault.master_key
            at_rest.lock(path, master, saved.vault_id)
    cache = KeyCache(not env.no_keyring)
    removed = cache.delete(saved.vault_id)
    if env.json:
        data: dict[str, Any] = {"vault_id": saved.vault_id, "locked": True, "key_was_cached": removed}
        if index:
            data["index_encrypted"] = True
        env.emit(data)
    else:
        env.say("locked" + ("" if removed else " (no key was cached)") + ("; the index is encrypted" if index else ""))


def sync(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the local index and rebuild it from the store.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Bring the local index up to date with the store (another machine's uploads).

    Example: livedata sync --rebuild
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import resume

    with open_vault(env, recover_index=rebuild) as vault:
        result = vault.sync(rebuild=rebuild, strict=True)
        aborted = resume.abort_abandoned_uploads(vault)  # S3: multipart uploads no one will resume
    if env.json:
        env.emit(
            {
                "journals": result.journals,
                "records": result.records,
                "versions": result.versions,
                "abandoned_uploads_aborted": aborted,
            }
        )
    else:
        env.say(f"synced: {result.journals} journal(s), {result.records} record(s); {result.versions} version(s) indexed")


def verify(
    data: Annotated[bool, typer.Option("--data", help="Authenticate every byte, not only headers.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check that every stored object is present and authentic.

    Example: livedata verify --data
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import ExitCode
    from livedata_cli.vault import maintenance

    with open_vault(env) as vault, env.progress(None, "verify") as bar:
        result = maintenance.verify(vault, data=data, progress=bar)
    if env.json:
        env.emit(result)
    else:
        for p in result["problems"]:
            env.warn(f"livedata: {p['path']}: {p['error']}")
        what = "every byte" if data else "headers"
        env.say(
            f"checked {result['objects']} object(s) of {result['versions']} version(s), {what}: "
            + ("all intact" if not result["problems"] else f"{len(result['problems'])} problem(s)")
        )
    if result["problems"]:
        raise typer.Exit(int(ExitCode.INTEGRITY))


def register(app: typer.Typer) -> None:
    for fn in (init, lock, sync, verify):
        app.command()(fn)


__all__ = ["ENV", "register"]
