"""Search and note commands.

``search`` reads only the local index: no store, no key, no unlock, and none
of the vault, crypto or keyring modules are imported.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from livedata_cli.cli.common import Env, JsonOpt, QuietOpt, human_size, open_vault, setup
from livedata_cli.names import check_note, for_json, shown, shown_tags, unicode_text

if TYPE_CHECKING:
    from livedata_cli.index.search import Hit

# With words, the best matches; without, every file the filters select.
DEFAULT_LIMIT = 50


def _open_locked_index(env: Env) -> None:
    """An index encrypted by 'lock --index' is opened with the vault key first (search then needs it)."""
    from livedata_cli import settings
    from livedata_cli.index import at_rest

    if settings.VaultSettings.exists() and at_rest.is_locked(settings.home() / settings.INDEX_FILE):
        with open_vault(env):
            pass  # opening the vault unlocks and decrypts the index


def search(
    query: Annotated[
        list[str] | None,
        typer.Argument(help='Words to find (all must match); "a phrase", prefix*, a OR b, -word, tag:word.'),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Only files with this tag (repeatable: all of them).")
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this MIME type: application/pdf, image/*, pdf, image (repeatable: any)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Stored at or after: 2026-01-31, 2026-01-31T09:30, 7d, 12h.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Stored before the end of this date (or this time, or age).")
    ] = None,
    larger_than: Annotated[
        str | None, typer.Option("--larger-than", help="Only files larger than this: 1MB, 10KiB, 2G.")
    ] = None,
    smaller_than: Annotated[
        str | None, typer.Option("--smaller-than", help="Only files smaller than this: 1MB, 10KiB, 2G.")
    ] = None,
    trash: Annotated[bool, typer.Option("--trash", help="Search removed files instead.")] = False,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version, not only the newest of each file.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", "-n", help=f"At most N results, 0 for all (default {DEFAULT_LIMIT} with words, else all)."
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Find files by name, path, tags, notes, type and (when indexed) contents, best first.

    Reads only the local index: no passphrase needed; 'livedata sync' brings in
    other machines' changes.

    Example: livedata search 'tax 2025' --tag finance --type pdf --since 2026-01-01
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import UsageError
    from livedata_cli.index import search as core

    text = " ".join(query or [])
    for given in [text, *(tag or []), *(type_ or [])]:  # what a Latin-1 terminal sends for "café"
        if unicode_text(given) != given:
            raise UsageError(f"'{shown(given)}' holds bytes that are not UTF-8: search for text")
    filters = core.Filters(
        tags=list(tag or []),
        types=list(type_ or []),
        since=core.parse_when(since, "--since") if since else None,
        until=core.parse_when(until, "--until", end_of_day=True) if until else None,
        larger_than=core.parse_size(larger_than, "--larger-than") if larger_than else None,
        smaller_than=core.parse_size(smaller_than, "--smaller-than") if smaller_than else None,
        trash=trash,
        all_versions=all_versions,
    )
    for kind in filters.types:
        core.type_condition(kind)  # a bad --type is a usage error before anything runs
    if limit is not None and limit < 0:
        raise UsageError("--limit: give a number of results, or 0 for all")
    has_words = core.parse_query(text) is not None
    if not has_words and filters.empty():
        raise UsageError("give words to find or a filter (--tag, --type, --since, --larger-than...)")
    if limit is None:
        limit = DEFAULT_LIMIT if has_words else 0
    import gc

    # A listing makes thousands of short-lived objects and no cycles, and the
    # process ends right after: the cyclic collector would be pure cost.
    gc.disable()
    _open_locked_index(env)
    results = core.search(core.open_index(), text, filters, limit=limit or None)
    if env.json:
        env.emit(
            {
                "query": text,
                "results": [h.to_json() for h in results.hits],
                "count": len(results.hits),
                "truncated": results.truncated,
            }
        )
        return
    if env.stdout_tty:
        _render_rich(env, results.hits)
    else:  # one tab-separated line per result, for scripts and pagers
        day = _Days()
        lines = [
            "\t".join(
                (shown(h.path), human_size(h.size), day(h.created), shown_tags(h.tags),
                 shown(core.plain_snippet(h.snippet)) if h.snippet else "")
            )
            for h in results.hits
        ]  # fmt: skip
        if lines:
            env.out("\n".join(lines))
    if not results.hits:
        env.say("no match")
    elif results.truncated:
        env.say(f"first {len(results.hits)} results shown: --limit N for more, --limit 0 for all")


class _Days:
    """Local dates of times, remembered per quarter hour (every time zone's
    midnight falls on one), since a listing may show thousands."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        key = int(t // 900)
        day = self.seen.get(key)
        if day is None:
            day = self.seen[key] = time.strftime("%Y-%m-%d", time.localtime(t))
        return day


def _render_rich(env: Env, hits: list[Hit]) -> None:
    """Results for a person: path, size, date, tags, and the words that matched."""
    import os

    from rich.console import Console
    from rich.text import Text

    from livedata_cli.index.search import MARK_END, MARK_START

    console = Console(highlight=False, no_color="NO_COLOR" in os.environ, soft_wrap=True)
    day = _Days()
    for h in hits:
        line = Text()
        line.append(_printable(shown(h.path)), style="bold")
        line.append(f"  {human_size(h.size)}  {day(h.created)}", style="dim")
        if h.tags:
            line.append("  " + " ".join(f"#{_printable(t)}" for t in h.tags), style="cyan")
        console.print(line)
        if h.snippet:
            snippet = Text("    ")
            for i, part in enumerate(_printable(for_json(h.snippet), keep=MARK_START + MARK_END).split(MARK_START)):
                matched, _, rest = part.partition(MARK_END) if i else ("", "", part)
                snippet.append(matched, style="bold yellow")
                snippet.append(rest)
            console.print(snippet)


def _printable(text: str, keep: str = "") -> str:
    """No control characters reach the terminal from a stored name or note."""
    return "".join(c if c.isprintable() or c in keep else "?" for c in text)


def note(
    ref: Annotated[str, typer.Argument(help="Vault path or version id.")],
    text: Annotated[
        str | None, typer.Argument(help="The note; it replaces the current one. Without it: show the note.")
    ] = None,
    append: Annotated[bool, typer.Option("--append", "-a", help="Add TEXT as a new line of the note.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the note.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write, show or clear the note of a file's newest version; notes are searchable
    and kept encrypted in the store; new versions keep the note.

    Example: livedata note report.pdf "signed copy, original with the bank"
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import UsageError

    if clear and (text is not None or append):
        raise UsageError("--clear takes no TEXT and no --append")
    if append and text is None:
        raise UsageError("--append needs the TEXT to add")
    if text is not None:
        check_note(text)  # before the vault is opened
    with open_vault(env) as vault:
        if text is None and not clear:
            v = vault.resolve(ref)
        else:
            v = vault.note(ref, "" if clear else text or "", append=append)
    if env.json:
        env.emit({"path": for_json(v.path), "id": v.vid, "notes": v.notes})
    elif text is None and not clear:
        if v.notes:
            env.out("\n".join(shown(line) for line in v.notes.split("\n")))  # its lines kept, each escaped
        else:
            env.say(f"{shown(v.path)} has no note")
    else:
        env.say(f"{shown(v.path)}: {'note removed' if not v.notes else 'note saved'}")


def register(app: typer.Typer) -> None:
    for fn in (search, note):
        app.command()(fn)
