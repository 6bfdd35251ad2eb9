"""``livedata convert``: format conversion of vault files, now or through the queue.

``livedata convert REF --to FMT`` is ``livedata convert run REF --to FMT``:
the group runs ``run`` whenever its first word is not one of its commands.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from livedata_cli.cli.common import (
    Env,
    JsonOpt,
    QuietOpt,
    group_with_default,
    human_size,
    human_time,
    open_vault,
    setup,
)
from livedata_cli.errors import ExitCode, UsageError
from livedata_cli.names import shown

if TYPE_CHECKING:
    from livedata_cli.convert.queue import Job
    from livedata_cli.convert.service import Item, Report

app = typer.Typer(
    cls=group_with_default("run"),
    no_args_is_help=True,
    help="Convert vault files to other formats, on this machine (or, when asked, with CloudConvert).\n\n"
    "'livedata convert REF --to FMT' is short for 'livedata convert run REF --to FMT'.",
)


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service stop) ends like Ctrl-C: the private folder is removed, a job given back."""

    def raise_interrupt(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _confirm_remote(env: Env, n: int, yes: bool) -> None:
    from livedata_cli.convert.cloudconvert import CloudConvert, host

    if not CloudConvert().available():
        raise UsageError("--engine cloudconvert needs an API key in LIVEDATA_CLOUDCONVERT_KEY")
    env.warn(
        f"livedata: warning: --engine cloudconvert sends the decrypted contents of {n} file(s) to {host()} "
        "(CloudConvert): the plaintext leaves this machine and the vault's encryption."
    )
    if yes:
        return
    if not env.can_prompt():
        raise UsageError("--engine cloudconvert: confirm with --yes (there is no terminal to ask on)")
    try:
        answer = input("Send the plaintext to CloudConvert? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not sent: the conversion was cancelled")


@app.command()
def run(
    paths: Annotated[
        list[str],
        typer.Argument(metavar="REF...", help="Vault paths, version ids, or globs in quotes ('photos/*.png')."),
    ],
    to: Annotated[str, typer.Option("--to", "-t", help="The format to convert to, as an extension: pdf, jpg, mp3.")],
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine", "-e",
            help="pillow, pandoc, libreoffice, ffmpeg or cloudconvert (default: the first local engine that can).",
        ),
    ] = None,
    as_: Annotated[
        str | None, typer.Option("--as", help="Vault path of the result; ending in '/' means a folder.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Also write the result to this local file (or folder).")
    ] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Only write it locally (-o); store nothing.")] = False,
    quality: Annotated[
        int | None, typer.Option("--quality", min=1, max=100, help="JPEG/WebP/AVIF quality, 1 to 100.")
    ] = None,
    keep_metadata: Annotated[
        bool, typer.Option("--keep-metadata", help="Keep EXIF (camera, GPS position) in images; dropped by default.")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Files converted at once.")] = 1,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Stop an engine that runs longer than this, in seconds.")
    ] = 300.0,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Queue the work and print the job id; 'convert worker' does it.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before sending plaintext to CloudConvert.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convert vault files to another format. The result is stored encrypted next to
    its source (same name, new extension), with the source's tags, and 'info' shows
    which version it was converted from. The source is never changed.

    Example: livedata convert report.docx --to pdf
    """
    env = setup(json_, quiet)
    from livedata_cli.convert import service
    from livedata_cli.convert.queue import Queue

    if no_store and not output:
        raise UsageError("--no-store needs -o: the result must go somewhere")
    if no_store and no_wait:
        raise UsageError("--no-store and --no-wait do not go together: a queued result is stored")
    out_path = None
    if output:
        from pathlib import Path

        out_path = str(Path(output).absolute()) + ("/" if output.endswith("/") else "")
    opts = service.Options(
        to=to, engine=engine, quality=quality, keep_metadata=keep_metadata, timeout=timeout,
        output=out_path, store=not no_store,
    )
    with open_vault(env) as vault, _term_as_interrupt():
        pairs = service.plan(vault, paths, opts, as_)
        if engine == "cloudconvert":
            _confirm_remote(env, len(pairs), yes)
        if no_wait:
            with Queue() as queue:
                report = service.enqueue(queue, pairs, opts)
            _render_queued(env, report)
            return
        with env.progress(len(pairs) * 100, "convert") as bar:
            seen: dict[int, int] = {}

            def on_progress(n: int, fraction: float) -> None:
                now = int(fraction * 100)
                bar(max(0, now - seen.get(n, 0)))
                seen[n] = max(now, seen.get(n, 0))

            report = service.convert(vault, pairs, opts, jobs=jobs, progress=on_progress)
    _finish(env, report)


def _render_queued(env: Env, report: Report) -> None:
    if env.json:
        env.emit(report.to_json())
        return
    for item in report.items:
        env.out(item.job or "")
        env.say(f"queued  {item.source} -> {item.path}  ({item.engine}); 'livedata convert status {item.job}'")


def _finish(env: Env, report: Report) -> None:
    failed = report.failed
    if env.json:
        env.emit(report.to_json())
    else:
        for item in report.items:
            if item.status == "failed":
                env.warn(f"livedata: {shown(f'{item.source}: {item.error}')}")
            else:
                where = f" and {item.output}" if item.output and item.id else (f" {item.output}" if item.output else "")
                stored = f"{item.path}{where}" if item.id else where.strip()
                env.say(f"converted  {shown(item.source)} -> {shown(stored)}  ({item.engine}, {human_size(item.size)})")
    if failed:
        if len(failed) == len(report.items):
            codes = {i.exit_code for i in failed}
            raise typer.Exit(codes.pop() if len(codes) == 1 else int(ExitCode.PARTIAL))
        raise typer.Exit(int(ExitCode.PARTIAL))


@app.command()
def formats(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """What this machine can convert, from what to what, by which engine (found at run
    time: Pillow, pandoc, LibreOffice, ffmpeg, and CloudConvert when a key is set).

    Example: livedata convert formats
    """
    env = setup(json_, quiet)
    from livedata_cli.convert import base

    table, missing = base.table(), base.missing()
    if env.json:
        env.emit({"engines": table, "missing": missing})
        return
    for entry in table:
        where = "" if entry["local"] else "  (remote: plaintext leaves this machine)"
        env.out(f"{entry['engine']} {entry['version']}{where}".rstrip())
        groups: dict[tuple[str, ...], list[str]] = {}
        conversions: dict[str, list[str]] = entry["conversions"]  # type: ignore[assignment]
        for src, dsts in conversions.items():  # sources that reach the same set (themselves aside)
            groups.setdefault(tuple(sorted({*dsts, src})), []).append(src)
        for reach, srcs in sorted(groups.items(), key=lambda g: g[1]):
            env.out(f"  {' '.join(srcs)}")
            env.out(f"      -> {' '.join(reach)}")
    if not table:
        env.say("no conversion engine found on this machine")
    if missing:
        env.say("not found: " + ", ".join(f"{m['engine']} ({m['hint']})" for m in missing))
    env.say("A file never converts to its own format; two local engines chain when neither converts alone (md -> docx -> pdf).")


@app.command()
def status(
    job_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="A job id (or its start); default: the newest jobs.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=2**63 - 1, help="How many jobs to list without an ID.")] = 20,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Where queued conversions are: queued, running (with progress), done (the
    result's path) or failed (the reason).

    Example: livedata convert status 3f2a9c1b04de
    """
    env = setup(json_, quiet)
    from livedata_cli.convert.queue import Queue

    with Queue() as queue:
        jobs = [queue.get(job_id)] if job_id else queue.list(limit)
    if env.json:
        env.emit(jobs[0].to_json() if job_id else {"jobs": [j.to_json() for j in jobs]})
        return
    if not jobs:
        env.say("no conversion jobs")
    for job in jobs:
        env.out(_job_line(job))


def _job_line(job: Job) -> str:
    what = f"{job.source} -> {job.target}"
    if job.status == "running":
        state = "running" + (f" {job.progress * 100:.0f}%" if job.progress is not None else "")
        note = " (its worker stopped: retried after the lease)" if job.stalled else f" (attempt {job.attempts}, {job.worker})"
        return f"{job.id}  {state:<12} {what}{note}"
    if job.status == "done":
        return f"{job.id}  {'done':<12} {what}  ({job.engine}, {human_time(job.finished)})"
    if job.status == "failed":
        return f"{job.id}  {'failed':<12} {what}: {job.error}"
    return f"{job.id}  {job.status:<12} {what}  (since {human_time(job.created)})"


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Stop when no job is left instead of waiting for more.")] = False,
    lease: Annotated[
        float,
        typer.Option("--lease", min=1, help="Seconds a job stays this worker's without a sign of life (renewed while it runs)."),
    ] = 60.0,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between looks at an empty queue.")] = 2.0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Process queued conversions, one at a time, each claimed by this worker alone;
    a job whose worker died is taken again after its lease. Runs until stopped
    (Ctrl-C or SIGTERM give the running job back), or with --once until the queue is empty.

    Example: livedata convert worker --once
    """
    env = setup(json_, quiet)
    from livedata_cli.convert import service
    from livedata_cli.convert.queue import Queue, worker_id

    me = worker_id()
    finished: list[dict[str, Any]] = []
    with open_vault(env) as vault, Queue() as queue, _term_as_interrupt():
        def after_job(job: Job, item: Item) -> None:
            finished.append(job.to_json())
            if item.status == "failed":
                env.warn(f"livedata: {job.id}: {job.source}: {item.error}")
            else:
                env.say(f"done  {job.id}  {job.source} -> {job.target}  ({item.engine})")
            # A worker runs for days: its audit events are written after each job.
            code = 0 if item.status != "failed" else int(item.exit_code or ExitCode.UNEXPECTED)
            try:
                vault.events.flush(code)
            except Exception as e:
                env.warn(f"livedata: warning: the audit trail was not written: {type(e).__name__}: {e}")

        env.say(f"convert worker {me}: waiting for jobs" if not once else f"convert worker {me}")
        stats = service.work(vault, queue, worker=me, lease=lease, once=once, poll=poll, after_job=after_job)
    if env.json:
        env.emit({"worker": me, "done": stats.done, "failed": stats.failed, "jobs": finished})
    else:
        env.say(f"worker: {stats.done} done, {stats.failed} failed")
