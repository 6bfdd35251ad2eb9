"""stats and diff: what the vault holds, and what changed between two points in time."""

from __future__ import annotations

from typing import Annotated

import typer

from livedata_cli.cli.common import (
    JsonOpt,
    QuietOpt,
    human_size,
    human_time,
    open_vault,
    parse_when,
    printable,
    setup,
)

PrefixArg = Annotated[str, typer.Argument(help="Only paths under this prefix (default: the whole vault).")]


def stats(prefix: PrefixArg = "", json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Files, versions, logical and stored bytes, the deduplication ratio, and a line per tag.

    Read from the local index ('livedata sync' first brings in other machines' work).
    Example: livedata stats backups/ --json
    """
    env = setup(json_, quiet)
    from livedata_cli.index import history
    from livedata_cli.localfs import clean_vault_path

    with open_vault(env) as vault:
        s = history.stats(vault.index, clean_vault_path(prefix) if prefix else "")
    if env.json:
        env.emit(s.to_json())
        return
    env.out(f"files:           {s.files} ({s.trashed} more in the trash)")
    env.out(f"versions:        {s.versions}")
    env.out(f"logical size:    {human_size(s.logical_bytes)} (newest versions)")
    env.out(f"all versions:    {human_size(s.all_versions_bytes)}")
    env.out(f"stored:          {human_size(s.stored_bytes)} in {s.objects} containers")
    env.out(f"dedup ratio:     {s.dedup_ratio:.2f}")
    if s.tags:
        env.out("tags:")
        from livedata_cli.names import shown

        names = {tag: shown(tag) for tag in s.tags}
        width = max(len(n) for n in names.values())
        for tag, t in sorted(s.tags.items()):
            env.out(f"  {names[tag]:<{width}}  {t.files:>7} files  {human_size(t.bytes):>10}")


def diff(
    before: Annotated[str, typer.Argument(help="The earlier point: a date or time (2026-11-20T03:00) or an age (7d).")],
    after: Annotated[str, typer.Argument(help="The later point, likewise, or 'now'.")] = "now",
    prefix: Annotated[str, typer.Option("--prefix", help="Only paths under this prefix.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The files added (+), removed (-) and changed (M) between two points in time.

    Exits 0 whether or not anything changed.
    Example: livedata diff 7d now --prefix backups/work/
    """
    env = setup(json_, quiet)
    import time

    from livedata_cli.errors import UsageError
    from livedata_cli.index import history
    from livedata_cli.localfs import clean_vault_path

    t0 = parse_when(before, "BEFORE")
    t1 = time.time() if after == "now" else parse_when(after, "AFTER")
    if t1 < t0:
        raise UsageError(f"{after!r} is before {before!r}: give the earlier point first")
    with open_vault(env) as vault:
        changes = history.diff(vault.index, clean_vault_path(prefix) if prefix else "", t0, t1)
    if env.json:
        env.emit({"before": t0, "after": t1, "changes": [c.to_json() for c in changes]})
        return
    mark = {"added": "+", "removed": "-", "changed": "M"}
    for c in changes:
        env.out(f"{mark[c.change]}  {printable(c.path)}")
    counts = {k: sum(1 for c in changes if c.change == k) for k in mark}
    env.say(f"{human_time(t0)} -> {human_time(t1)}: "
            f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")


def register(app: typer.Typer) -> None:
    app.command()(stats)
    app.command()(diff)
