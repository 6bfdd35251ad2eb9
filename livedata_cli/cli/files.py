"""File commands: upload, download, ls, info, rm, restore, tag."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from livedata_cli.cli.common import (
    JsonOpt,
    QuietOpt,
    finish_batch,
    human_size,
    human_time,
    open_vault,
    setup,
)


def upload(
    paths: Annotated[list[str], typer.Argument(help="Files or folders to store; '-' reads stdin (needs --as).")],
    as_: Annotated[
        str | None,
        typer.Option("--as", help="Vault path to store at; ending in '/' means a folder. Example: --as photos/"),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the stored files (repeatable).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Store folders and everything in them.")] = False,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files or folders matching this glob (repeatable).")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encrypt and store files. Unchanged files are not stored again.

    Example: livedata upload ~/photos --recursive --as photos/
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import BatchReport

    with open_vault(env) as vault:
        report = BatchReport()
        plan = vault.plan_upload(
            paths, as_path=as_, recursive=recursive, excludes=exclude or [], report=report
        )
        total = sum(_size(s.local) for s in plan)
        with env.progress(total or None, "upload") as bar:
            vault.upload(plan, tags=tag or [], report=report, progress=bar, stdin=sys.stdin.buffer)
        if len(report.items) <= 20:  # a few files: say what happened to each
            for item in report.items:
                if item.status != "failed":
                    env.say(f"{item.status:>12}  {item.path}  ({human_size(item.size)})")
    finish_batch(env, report, "upload")


def _size(local: str) -> int:
    if local == "-":
        return 0
    try:
        return Path(local).stat().st_size
    except OSError:
        return 0


def download(
    ref: Annotated[str, typer.Argument(help="Vault path (newest version), folder prefix ending in '/', or version id.")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File or folder to write; '-' writes to stdout.")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", "-V", help="Version number (1 is the oldest).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist already.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decrypt files from the vault; every byte is authenticated first.

    Example: livedata download photos/ -o restore/
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import UsageError
    from livedata_cli.vault import BatchReport, ItemResult, clean_vault_path

    with open_vault(env) as vault:
        report = BatchReport()
        if version is None and vault.is_folder(ref) and not vault.index.versions_of(clean_vault_path(ref)):
            prefix = clean_vault_path(ref, folder=True)
            files = vault.files_under(prefix)
            if not files:
                vault.sync()
                files = vault.files_under(prefix)
            if output == "-":
                raise UsageError("a folder cannot be written to stdout: give -o DIR")
            root = Path(output) if output else Path(prefix.rstrip("/").split("/")[-1] or ".")
            with env.progress(sum(v.size for v in files), "download") as bar:
                vault.download_tree(files, prefix, root, overwrite=overwrite, report=report, progress=bar)
            finish_batch(env, report, "download")
            return
        v = vault.resolve(ref, version=version)
        if output == "-":
            n = vault.read_version(v, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            report.items.append(ItemResult(v.path, "-", "downloaded", n, v.vid))
            if env.json:
                env.warn("livedata: --json ignored: the file went to stdout")
            return
        target = Path(output) if output else Path(v.path.split("/")[-1])
        if target.is_dir():
            target = target / v.path.split("/")[-1]
        elif output is None and target.exists() and not overwrite:
            raise UsageError(f"{target} exists: add --overwrite or give -o PATH")
        with env.progress(v.size, "download") as bar:
            n = vault.download_to(v, target, bar)
        report.items.append(ItemResult(v.path, str(target), "downloaded", n, v.vid))
        report.bytes_read = n
    finish_batch(env, report, "download")


def ls(
    prefix: Annotated[str, typer.Argument(help="Only paths under this prefix.")] = "",
    long: Annotated[bool, typer.Option("--long", "-l", help="Size, versions, tags and upload time too.")] = False,
    trash: Annotated[bool, typer.Option("--trash", help="List removed files instead.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the files in the vault (from the local index; 'livedata sync' refreshes it).

    Example: livedata ls photos/ --long
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import clean_vault_path

    with open_vault(env) as vault:
        rows = vault.index.latest(clean_vault_path(prefix) if prefix else "", trash=trash)
    if env.json:
        env.emit([{**v.to_json(), "versions": n} for v, n in rows])
        return
    for v, n in rows:
        if long:
            tags = ",".join(v.tags) or "-"
            env.out(f"{human_size(v.size):>10}  {n:>3}v  {human_time(v.created)}  {tags:<20}  {v.path}")
        else:
            env.out(v.path)


def info(
    ref: Annotated[str, typer.Argument(help="Vault path or version id.")],
    version: Annotated[int | None, typer.Option("--version", "-V", help="Version number.")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show every field of a file's newest version, and its older versions.

    Example: livedata info report.pdf
    """
    env = setup(json_, quiet)
    with open_vault(env) as vault:
        v = vault.resolve(ref, version=version)
        versions = vault.index.versions_of(v.path, trash=v.deleted is not None)
    data = {**v.to_json(), "versions": [x.to_json() for x in versions]}
    if env.json:
        env.emit(data)
        return
    for key, value in v.to_json().items():
        if key in ("mtime", "created", "deleted") and value is not None:
            value = human_time(value)
        elif key == "mode" and value is not None:
            value = oct(value)
        elif key == "tags":
            value = ", ".join(value) or "-"
        env.out(f"{key:>13}: {value if value not in (None, '') else '-'}")
    env.out("     versions:")
    for x in versions:
        env.out(f"  {x.number:>4}  {human_time(x.created)}  {human_size(x.size):>10}  {x.vid}")


def rm(
    ref: Annotated[str, typer.Argument(help="Vault path or version id.")],
    purge: Annotated[bool, typer.Option("--purge", help="Delete every version and its data for good.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move a file to the trash ('livedata restore' brings it back); --purge deletes its data.

    Example: livedata rm report.pdf
    """
    env = setup(json_, quiet)
    with open_vault(env) as vault:
        gone = vault.remove(ref, purge=purge)
    if env.json:
        env.emit({"path": gone[0].path, "purged": purge, "versions": len(gone)})
    else:
        env.say(f"{'purged' if purge else 'moved to trash'}: {gone[0].path} ({len(gone)} version(s))")


def restore(
    ref: Annotated[str, typer.Argument(help="Vault path of a removed file.")],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Bring a removed file back from the trash.

    Example: livedata restore report.pdf
    """
    env = setup(json_, quiet)
    with open_vault(env) as vault:
        back = vault.restore(ref)
    if env.json:
        env.emit({"path": back[0].path, "versions": len(back)})
    else:
        env.say(f"restored: {back[0].path} ({len(back)} version(s))")


def tag(
    ref: Annotated[str, typer.Argument(help="Vault path or version id.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to add (or remove).")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add tags to a file's newest version, or remove them.

    Example: livedata tag report.pdf finance q3
    """
    env = setup(json_, quiet)
    with open_vault(env) as vault:
        v = vault.tag(ref, tags, remove=remove)
    if env.json:
        env.emit({"path": v.path, "id": v.vid, "tags": list(v.tags)})
    else:
        env.say(f"{v.path}: {', '.join(v.tags) or 'no tags'}")


def register(app: typer.Typer) -> None:
    for fn in (upload, download, ls, info, rm, restore, tag):
        app.command()(fn)
