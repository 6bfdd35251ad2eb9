"""Audit commands: list the trail, verify it, export it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from livedata_cli.cli.common import (
    Env,
    JsonOpt,
    NoHeaderOpt,
    QuietOpt,
    human_time,
    open_vault,
    parse_when,
    setup,
    table,
)

if TYPE_CHECKING:
    from livedata_cli.audit.chain import Trail

app = typer.Typer()

SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only events at or after this date, date-time or age (7d).")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Only events at or before this date, date-time or age.")
]
ActionOpt = Annotated[
    list[str] | None,
    typer.Option("--action", "-a", help="Only this action (upload, download, rm, unlock...; repeatable)."),
]
PathOpt = Annotated[
    str | None, typer.Option("--path", help="Only paths matching this glob. Example: --path 'finance/*'")
]
ResultOpt = Annotated[str | None, typer.Option("--result", help="Only this result: ok, denied or error.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", min=1, max=2**63 - 1, help="At most this many events.")]


@contextmanager
def _trail(env: Env) -> Iterator[Trail]:
    """The unlocked trail, with waiting events chained and other machines' imported."""
    from livedata_cli.audit.chain import Trail

    with open_vault(env) as vault:
        trail = Trail.of(vault)
        trail.append([])
        trail.import_chains()
        yield trail


def _query(
    trail: Trail,
    since: str | None,
    until: str | None,
    action: list[str] | None,
    path: str | None,
    result: str | None,
    limit: int | None,
    *,
    newest_first: bool,
) -> list[dict[str, Any]]:
    from livedata_cli.errors import UsageError

    if result is not None and result not in ("ok", "denied", "error"):
        raise UsageError(f"--result must be ok, denied or error, not {result!r}")
    from livedata_cli.audit import report

    window: dict[str, Any] = {
        "since": parse_when(since, "--since") if since else None,
        "until": parse_when(until, "--until") if until else None,
        "actions": action or None,
        "path": path,
        "result": result,
        "limit": limit,
        "newest_first": newest_first,
    }
    # A vault on a Live-Data server: the server's own records of the account join in.
    return report.with_server_events(trail, report.events(trail, **window), **window)


@app.callback(invoke_without_command=True)
def events(
    ctx: typer.Context,
    since: SinceOpt = None,
    until: UntilOpt = None,
    action: ActionOpt = None,
    path: PathOpt = None,
    result: ResultOpt = None,
    limit: LimitOpt = None,
    no_header: NoHeaderOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The audit trail: who did what, when, from where, and whether it worked.

    With no command, list events newest first: time, action, path, result,
    host, user and flags (failure-burst, mass-delete).
    Example: livedata audit --since 2026-11-01 --action download --path 'finance/*'
    """
    if ctx.invoked_subcommand is not None:
        return
    env = setup(json_, quiet)
    from livedata_cli.audit.report import export_row

    with _trail(env) as trail:
        rows = [export_row(e) for e in _query(trail, since, until, action, path, result, limit, newest_first=True)]
    if env.json:
        env.emit(rows)
        return
    lines = []
    for e in rows:
        outcome = e["result"] if e["code"] == 0 else f"{e['result']} ({e['code']})"
        flags = ("[" + ", ".join(e["flags"]) + "]") if e["flags"] else ""
        pending = "(not chained yet)" if e["seq"] is None else ""
        lines.append((human_time(_epoch(e["time"])), e["action"], e["path"] or "-", outcome, e["host"], e["user"],
                      f"{flags} {pending}".strip()))
    table(env, ("TIME", "ACTION", "PATH", "RESULT", "HOST", "USER", "FLAGS"), lines, no_header=no_header)


@app.command()
def verify(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Check that no audit event was edited, deleted, inserted, reordered or cut off.

    Exit 5 names the first bad event and the check that caught it.
    Example: livedata audit verify
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import ExitCode

    with _trail(env) as trail:
        report = trail.verify()
    if env.json:
        env.emit(report)
        if not report["intact"]:
            raise typer.Exit(int(ExitCode.INTEGRITY))
        return
    problems = report["problems"]
    if problems:
        from livedata_cli.errors import IntegrityError

        first = problems[0]
        more = f"; {len(problems) - 1} more problem(s): --json lists them" if len(problems) > 1 else ""
        raise IntegrityError(
            f"audit trail tampered: {first['message']} (caught by the {first['check']} on the {first['where']}){more}"
        )
    chains = len(report["chains"])
    head = report["head"][:8] + "…" if report["head"] else "none"
    extra = f" in {chains} chains" if chains > 1 else ""
    waiting = f"; {report['pending']} event(s) wait to be chained" if report["pending"] else ""
    env.say(f"intact: {report['events']:,} events{extra}, chain head {head}{waiting}")


@app.command()
def export(
    format_: Annotated[str, typer.Option("--format", "-f", help="jsonl (one JSON object a line) or csv.")] = "jsonl",
    output: Annotated[str, typer.Option("--output", "-o", help="File to write; '-' (the default) is stdout.")] = "-",
    since: SinceOpt = None,
    until: UntilOpt = None,
    action: ActionOpt = None,
    path: PathOpt = None,
    result: ResultOpt = None,
    limit: LimitOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the audit trail, oldest first, as JSON lines or CSV (same fields as --json).

    Example: livedata audit export --format csv -o trail.csv
    """
    env = setup(json_, quiet)
    import csv
    import json

    from livedata_cli.audit.report import EXPORT_FIELDS, export_row
    from livedata_cli.errors import UsageError

    if format_ not in ("jsonl", "csv"):
        raise UsageError(f"--format must be jsonl or csv, not {format_!r}")
    with _trail(env) as trail:
        rows = [export_row(e) for e in _query(trail, since, until, action, path, result, limit, newest_first=False)]

    def write(out: IO[str]) -> None:
        if format_ == "jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "flags": ";".join(row["flags"]), "seq": "" if row["seq"] is None else row["seq"]})

    if output == "-":
        write(sys.stdout)
        sys.stdout.flush()
    else:
        _write_file(output, write)
        if env.json:
            env.emit({"events": len(rows), "format": format_, "output": output})
        else:
            env.say(f"exported {len(rows):,} event(s) to {output}")


def _write_file(output: str, write: Callable[[IO[str]], None]) -> None:
    """Write ``output`` as a download writes a file: 0600 (names in the clear),
    renamed into place once whole, and a target that cannot take it is exit 2
    naming it (``envfail``), not a traceback."""
    import io
    from pathlib import Path

    from livedata_cli import envfail, localfs
    from livedata_cli.errors import UsageError

    def text(f: BinaryIO) -> int:
        out = io.TextIOWrapper(f, encoding="utf-8", newline="")
        try:
            write(out)
            out.flush()
        finally:
            out.detach()  # write_file closes the file
        return 0

    target = Path(output)
    envfail.register(envfail.TARGET, target.parent, target)
    try:
        localfs.write_file(target, text, mode=0o600)
    except OSError as e:
        known = envfail.translate(e, place=envfail.TARGET)
        raise known or UsageError(f"cannot write {output} ({e.strerror or e}): choose another -o") from None


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
