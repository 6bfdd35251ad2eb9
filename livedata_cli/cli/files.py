"""File commands: upload, download, ls, info, rm, restore, tag."""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from livedata_cli.cli.common import (
    JsonOpt,
    NoHeaderOpt,
    QuietOpt,
    finish_batch,
    human_size,
    human_time,
    open_vault,
    parse_when,
    printable,
    setup,
    table,
)
from livedata_cli.names import check_tags, for_json, shown, shown_tags, to_bytes

if TYPE_CHECKING:
    from livedata_cli.index.core import Version
    from livedata_cli.localfs import UploadSource
    from livedata_cli.vault.core import Vault
    from livedata_cli.vault.reports import BatchReport


def upload(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or folders to store; '-' reads stdin (needs --as).")
    ] = None,
    as_: Annotated[
        str | None,
        typer.Option("--as", help="Vault path to store at; ending in '/' means a folder. Example: --as photos/"),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag the stored files (repeatable).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Store folders and everything in them.")] = False,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files or folders matching this glob (repeatable).")
    ] = None,
    exclude_file: Annotated[
        list[str] | None,
        typer.Option("--exclude-file", help="Read exclude globs from a file, one a line, '#' comments (repeatable)."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, max=64, help="Files in flight at once (default: 4 to S3 or the API when a file over 1 MiB is to go, else 1: small files are sealed by worker processes)."),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Exit 7 at once if another livedata holds the vault lock.")
    ] = False,
    index_content: Annotated[
        bool,
        typer.Option(
            "--index-content", help="Make the words of text files searchable (their first 64 KiB, kept encrypted)."
        ),
    ] = False,
    password: Annotated[
        bool,
        typer.Option(
            "--password", help="Protect the files with a file password (asked twice, or LIVEDATA_FILE_PASSWORD)."
        ),
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Store new versions of password-protected files without one.")
    ] = False,
    files_from: Annotated[
        list[str] | None,
        typer.Option("--files-from", help="Also store the paths listed in this file, one a line ('-': stdin)."),
    ] = None,
    files_from0: Annotated[
        list[str] | None,
        typer.Option("--files-from0", help="Likewise, NUL-separated (find -print0): any name, byte for byte."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Say what would be stored and how much would be read; change nothing.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encrypt and store files and folders. Unchanged files are not read again, and
    content already in the vault is not stored twice.

    Example: livedata upload ~/work --recursive --as backups/work/ --exclude '*.tmp'
    """
    env = setup(json_, quiet)
    from livedata_cli.localfs import read_ignore_file
    from livedata_cli.vault import upload as uploads
    from livedata_cli.vault.reports import BatchReport

    excludes = list(exclude or [])
    for path in exclude_file or []:
        excludes += read_ignore_file(path)
    if password and no_password:
        from livedata_cli.errors import UsageError

        raise UsageError("--password and --no-password exclude each other")
    listed = _listed_paths(files_from or [], b"\n") + _listed_paths(files_from0 or [], b"\0")
    if not paths and not listed:
        from livedata_cli.errors import UsageError

        raise UsageError("nothing to store: give PATH... or --files-from FILE")
    if dry_run:
        with open_vault(env) as vault:
            report = BatchReport()
            plan = _plan(vault, paths or [], listed, as_, recursive, excludes, report)
            uploads.preview_upload(vault, plan, report)
        if env.json:
            env.emit({**report.to_json(), "dry_run": True})
            return
        for item in report.items:
            env.out(f"{item.status:>10}  {printable(item.path)}  ({human_size(item.size)})")
        counts = report.counts()
        env.say(
            "dry run: " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing to do")
            + f"; {human_size(report.bytes_read)} would be read; nothing was stored"
        )
        return
    secret = env.new_file_password() if password else None
    with open_vault(env) as vault, vault.lock(wait=not no_wait, command="upload"):
        report = BatchReport()
        plan = _plan(vault, paths or [], listed, as_, recursive, excludes, report)
        total = sum(s.stat.st_size for s in plan if s.stat is not None)
        with env.progress(total or None, "upload") as bar:
            uploads.upload(
                vault,
                plan,
                tags=check_tags(tag or []),
                report=report,
                progress=bar,
                stdin=sys.stdin.buffer,
                jobs=jobs,
                index_content=index_content,
                password=secret,
                no_password=no_password,
            )
        if len(report.items) <= 20:  # a few files: say what happened to each
            for item in report.items:
                if item.status not in ("failed", "skipped"):
                    env.say(f"{item.status:>10}  {shown(item.path)}  ({human_size(item.size)})")
    finish_batch(env, report, "upload")


def _listed_paths(files: list[str], separator: bytes) -> list[str]:
    """The paths a ``--files-from`` list names (blank lines and, for line lists,
    ``#`` comments skipped), as the OS's names: undecodable bytes survive."""
    out: list[str] = []
    for name in files:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as e:
            from livedata_cli.errors import UsageError

            raise UsageError(f"--files-from: cannot read {name}: {e.strerror}") from None
        for raw in data.split(separator):
            item = raw.rstrip(b"\r") if separator == b"\n" else raw
            if item and not (separator == b"\n" and item.startswith(b"#")):
                out.append(os.fsdecode(item))
    return out


def _plan(vault: Vault, paths: list[str], listed: list[str], as_: str | None, recursive: bool,
          excludes: list[str], report: BatchReport) -> list[UploadSource]:
    """The upload plan: PATH arguments as usual, and each listed path at its own
    relative path (under ``--as P/`` when given), as ``tar -T`` keeps them."""
    from livedata_cli.vault.upload import plan_upload

    plan = plan_upload(vault, paths, as_path=as_, recursive=recursive, excludes=excludes, report=report) if paths else []
    base = (as_ or "").rstrip("/") + "/" if as_ else ""
    for local in listed:
        where = base + local.lstrip("/").removeprefix("./")
        plan += plan_upload(vault, [local], as_path=where + ("/" if os.path.isdir(local) else ""),
                            recursive=recursive, excludes=excludes, report=report)
    return plan


def download(
    ref: Annotated[
        str,
        typer.Argument(
            help="Vault path (newest version), folder prefix ending in '/', version id, "
            "share link or file, or the id of a share to you."
        ),
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File or folder to write; '-' writes to stdout.")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", "-V", help="Version number (1 is the oldest).")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="The tree as it was at this time (ISO date/time, local time).")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only the newest set (sub-folder of REF) having the --tag tags.")
    ] = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Only files with this tag (repeatable).")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace files (and links, pipes) that exist already; never a folder.")
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="A folder download: only paths matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="A folder download: leave out paths matching this glob (repeatable)."),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="A share's key, when REF is a share file or link without '#KEY'.")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decrypt files from the vault, or a share; every byte is authenticated before it is written.

    Example: livedata download ci/ --latest --tag branch=main -o dist/
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import NotFound
    from livedata_cli.vault import download as downloads
    from livedata_cli.vault.reading import read_version
    from livedata_cli.vault.reports import BatchReport

    named = downloads.what_is(ref, None, key=key)  # a share file or link needs no vault
    if isinstance(named, downloads.ShareLink):
        from livedata_cli.cli.share_cmds import download_share

        download_share(env, ref, key=key, output=output, overwrite=overwrite)
        return
    when = parse_when(at, "--at") if at and named is None else None  # a link to a share to this account ignores it
    with open_vault(env) as vault:
        if named is None:
            named = downloads.what_is(
                ref, vault, version=version, at=when, latest=latest, tags=tag or [], selecting=bool(include or exclude)
            )
        report = BatchReport()
        if isinstance(named, downloads.Incoming):
            from livedata_cli.cli.share_cmds import write_incoming

            try:
                write_incoming(env, vault, ref, output=output, overwrite=overwrite)
            except NotFound:
                if named.not_found is None:  # a link: its own answer
                    raise
                raise named.not_found from None  # an id: the vault's answer, as for any unknown id
            return
        if isinstance(named, downloads.Tree):
            downloads.download_files(
                vault, named, output, overwrite=overwrite, include=include or [], exclude=exclude or [],
                report=report, progress=lambda size: env.progress(size, "download"),
            )
            finish_batch(env, report, "download")
            return
        assert isinstance(named, downloads.File)
        v = named.version
        if output == "-":
            read_version(vault, v, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            if env.json:
                env.warn("livedata: --json ignored: the file went to stdout")
            return
        item = downloads.download_file(
            vault, v, output, overwrite=overwrite, progress=lambda size: env.progress(size, "download")
        )
        report.items.append(item)
        if item.status == "downloaded":
            report.bytes_read = item.size
        report.duration = time.monotonic() - report.started
    finish_batch(env, report, "download")


def ls(
    prefix: Annotated[str, typer.Argument(help="Only paths under this prefix.")] = "",
    long: Annotated[bool, typer.Option("--long", "-l", help="Size, versions, tags and upload time too.")] = False,
    trash: Annotated[bool, typer.Option("--trash", help="List removed files instead.")] = False,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Folders too (they are stored for their modes and times).")] = False,
    null: Annotated[
        bool, typer.Option("--null", "-0", help="Paths as stored, each ended by a NUL byte, for xargs -0 (no escaping).")
    ] = False,
    no_header: NoHeaderOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the files in the vault (from the local index; 'livedata sync' refreshes it).

    Example: livedata ls photos/ --long
    """
    env = setup(json_, quiet)
    from livedata_cli.localfs import clean_vault_path

    prefix = clean_vault_path(prefix) if prefix else ""
    with open_vault(env) as vault:
        if not long and not env.json:  # the common case: paths only, streamed
            out = sys.stdout
            paths = vault.index.newest_paths(prefix, trash=trash, dirs=all_)
            if null:
                out.flush()
                sys.stdout.buffer.writelines(to_bytes(p) + b"\0" for p in paths)
                return
            from livedata_cli.names import shown_lines

            out.writelines(shown_lines(paths))  # a name from the store never drives the terminal
            return
        rows = vault.index.latest(prefix, trash=trash)
    rows = [(v, n) for v, n in rows if all_ or v.kind != "dir"]  # (--long, or --json)
    if env.json:
        env.emit([{**v.to_json(), "versions": n} for v, n in rows])
        return
    table(env, ("SIZE", "VERSIONS", "UPLOADED", "TAGS", "PATH"), (_long_row(v, n) for v, n in rows), no_header=no_header)


def _long_row(v: Version, n: int) -> tuple[str, ...]:
    name = v.path + ("/" if v.kind == "dir" else f" -> {v.target}" if v.kind == "symlink" else "")
    note = v.notes.strip().splitlines()[0][:60] if v.notes.strip() else ""
    name += "  [password]" if v.protected else ""
    name += f"  # {note}" if note else ""  # the note's first line
    return human_size(v.size).rjust(10), f"{n}v".rjust(4), human_time(v.created), shown_tags(v.tags), name


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
        source = vault.index.version_by_id(v.derived_from) if v.derived_from else None
        pruned = vault.index.pruned_numbers(v.path)
    data = {**v.to_json(), "versions": [x.to_json() for x in versions], "pruned": pruned}
    if env.json:
        env.emit(data)
        return
    for key, value in v.to_json().items():
        if key in ("mtime", "created", "deleted") and value is not None:
            value = human_time(value)
        elif key == "mode" and value is not None:
            value = oct(value)
        elif key == "tags":
            value = shown_tags(value)
        elif key == "derived_from" and value:  # a conversion's result
            key, value = "converted from", f"{source.path} version {source.number} ({value})" if source else value
        elif key == "notes":
            value = "\n".join(shown(line) for line in value.strip().split("\n"))
            value = value.replace("\n", "\n" + " " * 15)  # a note's lines stay aligned
        elif key in ("path", "target") and value:
            value = shown(value)
        env.out(f"{key:>13}: {value if value not in (None, '') else '-'}")
    env.out("     versions:")
    for x in versions:
        env.out(f"  {x.number:>4}  {human_time(x.created)}  {human_size(x.size):>10}  {x.vid}")
    if pruned:  # numbers never move: a pruned version leaves a gap
        env.out(f"       pruned: {_number_ranges(pruned)}")


def _number_ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def rm(
    refs: Annotated[
        list[str], typer.Argument(metavar="REF...", help="Vault paths, version ids, globs in quotes, or folders (with -r).")
    ],
    purge: Annotated[bool, typer.Option("--purge", help="Delete every version and its data for good.")] = False,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="A folder (photos/) removes everything under it.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move files to the trash ('livedata restore' brings them back); --purge deletes their data.

    Several paths, globs ('photos/*.jpg') and, with --recursive, folders (photos/) are
    removed in one go; a REF that matches nothing is named (exit 8 when others went).
    Example: livedata rm 'tmp/*.log' old-report.pdf
    """
    env = setup(json_, quiet)
    with open_vault(env) as vault, vault.lock(exclusive=True, command="rm --purge") if purge else nullcontext():
        gone, failed = vault.remove_many(refs, purge=purge, recursive=recursive)
    versions = sum(len(v) for v in gone.values())
    for ref, e in failed:  # stderr, with --json too; the message names the ref already, as a single rm's does
        env.warn(f"livedata: error: {shown(e.message if e.message.startswith(ref) else f'{ref}: {e.message}')}")
    if env.json:
        first = next(iter(gone), "")
        env.emit({
            "path": for_json(first), "paths": [for_json(p) for p in gone], "purged": purge, "versions": versions,
            "failed": [{"ref": ref, "error": e.message, "exit_code": int(e.exit_code)} for ref, e in failed],
        })
    elif gone:
        files = sum(1 for vs in gone.values() if vs and vs[0].kind != "dir")  # folders' entries go too
        what = shown(next(iter(gone))) if len(gone) == 1 else f"{files} files"
        env.say(f"{'purged' if purge else 'moved to trash'}: {what} ({versions} version(s))")
    if failed:
        codes = {int(e.exit_code) for _ref, e in failed}
        raise typer.Exit(codes.pop() if not gone and len(codes) == 1 else 8)


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
        env.emit({"path": for_json(back[0].path), "versions": len(back)})
    else:
        env.say(f"restored: {shown(back[0].path)} ({len(back)} version(s))")


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
        v = vault.tag(ref, tags if remove else check_tags(tags), remove=remove)  # a stored bad tag can go
    if env.json:
        env.emit({"path": for_json(v.path), "id": v.vid, "tags": list(v.tags)})
    else:
        env.say(f"{shown(v.path)}: {shown_tags(v.tags) if v.tags else 'no tags'}")


def prune(
    prefix: Annotated[str, typer.Argument(help="Only paths under this prefix.")] = "",
    keep_last: Annotated[int, typer.Option("--keep-last", help="Keep the newest N versions of each file.")] = 0,
    keep_daily: Annotated[int, typer.Option("--keep-daily", help="Keep the newest version of each of the last N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly", help="Keep the newest version of each of the last N weeks.")] = 0,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly", help="Keep the newest version of each of the last N months.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would go, change nothing.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Exit 7 at once if the vault lock is held.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Reclaim space, and with --keep-* flags forget old versions by a retention policy.

    Without a policy no version is forgotten: prune deletes partial uploads of
    killed runs, data no record refers to and abandoned S3 multipart uploads,
    and repacks packs with dead space. It holds an exclusive lock in the store:
    uploads on every machine wait for it, and it waits for them.
    The newest version of every file is always kept.

    Example: livedata prune backups/ --keep-last 5 --keep-daily 7 --keep-weekly 4 --dry-run
    """
    env = setup(json_, quiet)
    from livedata_cli.vault import maintenance
    from livedata_cli.vault.retention import Policy

    policy = Policy(last=keep_last, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly)
    forget = policy if (keep_last or keep_daily or keep_weekly or keep_monthly) else None
    if forget is None and prefix:
        from livedata_cli.errors import UsageError

        raise UsageError("a prefix selects versions to forget: give it with --keep-last, --keep-daily, ...")
    with open_vault(env) as vault, vault.lock(wait=not no_wait, exclusive=True, command="prune"):
        result = maintenance.prune(vault, prefix, forget, dry_run=dry_run)
    if env.json:
        env.emit(result)
        return
    if env.quiet:  # cron: nothing unless something failed
        for problem in result["reclaimed"].get("problems", []):
            env.warn(f"livedata: warning: {problem}")
        return
    verb = "would remove" if dry_run else "removed"
    for r in result["removed"]:
        env.out(f"{verb}: {shown(r['path'])} version {r['version']} ({human_time(r['created'])})")
    rec = result["reclaimed"]
    parts = [
        f"{rec[k]['objects']} {label} ({human_size(rec[k]['bytes'])})"
        for k, label in (
            ("tmp", "partial upload(s)"),
            ("unreferenced", "unreferenced object(s)"),
            ("packs", "pack(s) repacked"),
            ("uploads", "abandoned multipart upload(s)"),
        )
        if rec[k]["objects"]
    ]
    for line in parts:
        env.out(f"{'would reclaim' if dry_run else 'reclaimed'}: {line}")
    for problem in rec.get("problems", []):
        env.warn(f"livedata: warning: {problem}")
    env.say(
        f"prune: {len(result['removed'])} version(s) {verb}, {result['kept']} kept, "
        f"{human_size(result['bytes_freed'])} {'reclaimable' if dry_run else 'freed'}"
    )


def register(app: typer.Typer) -> None:
    for fn in (upload, download, ls, info, rm, restore, tag, prune):
        app.command()(fn)
