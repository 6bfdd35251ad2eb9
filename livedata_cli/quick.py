"""``livedata ls`` and ``livedata search`` answered without loading the command tree.

Importing Typer, Click and every command module costs more than a whole plain
listing of 10,000 files. These two commands only read the local index, so
:func:`run` serves their common forms straight from the same core functions
the commands call (``Index.newest_paths``, ``search.search``), and prints
what they print.

It serves a command line only when it understands all of it and when nothing
can make the full command behave differently; everything else (global
options but ``--json``, ``--quiet`` and ``--no-keyring``, ``--long``, a terminal on stdout for ``search``
without ``--json``, a profile, a store set in the
environment, an index locked by ``lock --index``, any error at all) returns
None before anything is printed, and the full command line runs instead and
answers, or fails, exactly as it always has. ``tests/test_quick.py`` runs the
same command lines both ways and compares stdout, stderr and the exit code
byte for byte.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from itertools import chain, islice
from typing import Final

__all__ = ["run"]

# ls: flags that change what a plain listing prints, and those that change nothing in it.
_LS_FLAGS: Final = {
    "--trash": "trash", "--all": "all", "-a": "all", "--null": "null", "-0": "null", "--json": "json",
}  # fmt: skip
_LS_NO_EFFECT: Final = {"--no-header", "--quiet", "-q"}
# search: options taking a value, and flags.
_SEARCH_VALUES: Final = {
    "--tag": "tag",
    "-t": "tag",
    "--type": "type",
    "--since": "since",
    "--until": "until",
    "--larger-than": "larger_than",
    "--smaller-than": "smaller_than",
    "--limit": "limit",
    "-n": "limit",
}
_SEARCH_FLAGS: Final = {
    "--trash": "trash", "--all-versions": "all_versions", "--quiet": "quiet", "-q": "quiet", "--json": "json",
}  # fmt: skip
_DEFAULT_LIMIT: Final = 50  # livedata_cli/cli/search_cmds.py: DEFAULT_LIMIT


class _Decline(Exception):
    """This command line is the full CLI's to answer."""


def run(args: list[str]) -> int | None:
    """The exit code of ``livedata ARGS`` when served here, else None (nothing printed).

    Ctrl-C is the caller's: :mod:`livedata_cli.interrupt` is installed first."""
    try:
        write = _prepare(args)
    except Exception:  # _Decline, or anything the full command may report its own way
        return None
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader went away, as the full CLI treats it
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except Exception as e:  # a listing failing part way (a damaged page of the index)
        return _failed(e)
    return 0


def _failed(e: Exception) -> int:
    """One line and the exit code, as ``livedata_cli.cli.main`` reports an error
    once output has begun (the listing streams, so it cannot start over)."""
    from livedata_cli import envfail
    from livedata_cli.errors import LivedataError
    from livedata_cli.index.recovery import as_index_error
    from livedata_cli.names import shown

    known = e if isinstance(e, LivedataError) else envfail.translate(e) or as_index_error(e)
    if known is not None:
        message, code = known.message, int(known.exit_code)
    else:
        message, code = f"unexpected error: {type(e).__name__}: {e} (run with --debug for details)", 1
    sys.stdout.flush()
    sys.stderr.write(f"livedata: error: {shown(message)}\n")
    return code


def _prepare(args: list[str]) -> Callable[[], None]:
    """Everything up to the first byte of output; raises to decline."""
    at = command_at(args)
    if at is None:
        raise _Decline()
    glob = set(args[:at])
    json_, quiet = _environment()
    json_ = json_ or "--json" in glob
    quiet = quiet or bool(glob & {"-q", "--quiet"})
    if args[at] == "ls":
        return _ls(args[at + 1 :], json_)
    return _search(args[at + 1 :], json_, quiet)


# Global options this module understands before the command (--no-keyring
# changes nothing for commands that never unlock).
_GLOBAL: Final = frozenset({"--json", "-q", "--quiet", "--no-keyring"})


def command_at(args: list[str]) -> int | None:
    """Where ``ls`` or ``search`` stands in ``args`` after global options this
    module understands; None for any other command line."""
    for at, word in enumerate(args):
        if word in ("ls", "search"):
            return at
        if word not in _GLOBAL:
            return None
    return None


def _environment() -> tuple[bool, bool]:
    """Settings as the full CLI merges them (environment > config file > default);
    declines whatever would change the command. Returns the effective ``json``
    and ``quiet``."""
    from livedata_cli import settings

    settings.reset()
    if settings.active_profile() is not None:
        raise _Decline()
    json_ = bool(settings.setting("json"))
    quiet = bool(settings.setting("quiet"))
    settings.setting("no_keyring")  # a malformed value is the full CLI's error to report
    if settings.resolve("store").source == "environment":  # attaches a home to a store
        raise _Decline()
    for name in ("passphrase_file", "passphrase_command", "server", "email", "stall_timeout"):
        settings.setting(name)
    return json_, quiet


def _emit(data: object) -> Callable[[], None]:
    """The one JSON document, as ``Env.emit`` prints it."""
    import json

    text = json.dumps(data, indent=2, default=str) + "\n"

    def write() -> None:
        sys.stdout.write(text)

    return write


def _index_path() -> str:
    from livedata_cli import settings
    from livedata_cli.index import at_rest

    saved = settings.VaultSettings.load()  # no vault: the full CLI's "not found"
    if "://" in saved.store and not saved.store.startswith("file://"):
        raise _Decline()  # opening an S3 or API store object is the full CLI's business
    path = settings.home() / settings.INDEX_FILE
    if at_rest.is_locked(path):
        raise _Decline()
    return str(path)


def _ls(rest: list[str], json_: bool) -> Callable[[], None]:
    flags: set[str] = set()
    prefix: str | None = None
    for word in rest:
        if word in _LS_FLAGS:
            flags.add(_LS_FLAGS[word])
        elif word in _LS_NO_EFFECT:
            continue
        elif word.startswith("-") or prefix is not None or not word:
            raise _Decline()
        else:
            prefix = word
    from livedata_cli.localfs import clean_vault_path

    cleaned = clean_vault_path(prefix) if prefix else ""
    path = _index_path()
    from pathlib import Path

    from livedata_cli.index.core import Index

    json_ = json_ or "json" in flags
    index = Index(Path(path))
    try:
        if json_:  # as the full command: every field of each newest version
            rows = [(v, n) for v, n in index.latest(cleaned, trash="trash" in flags) if "all" in flags or v.kind != "dir"]
            index.close()
            return _emit([{**v.to_json(), "versions": n} for v, n in rows])
        # Streamed, as the full command streams them (a million paths are not
        # held in memory); the first block is read here, so a query that
        # fails at once is still the full command's to report.
        paths = index.newest_paths(cleaned, trash="trash" in flags, dirs="all" in flags)
        first = list(islice(paths, 2048))
    except BaseException:
        index.close()
        raise
    rows_ = chain(first, paths)
    from livedata_cli.names import shown_lines, to_bytes

    def write() -> None:
        try:
            if "null" in flags:
                sys.stdout.flush()
                sys.stdout.buffer.writelines(to_bytes(p) + b"\0" for p in rows_)
            else:
                sys.stdout.writelines(shown_lines(rows_))  # a name from the store never drives the terminal
        finally:
            index.close()

    return write


def _search(rest: list[str], json_: bool, quiet: bool) -> Callable[[], None]:
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    words: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in _SEARCH_VALUES:
            if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
                raise _Decline()
            values.setdefault(_SEARCH_VALUES[word], []).append(rest[i + 1])
            i += 2
            continue
        if word in _SEARCH_FLAGS:
            flags.add(_SEARCH_FLAGS[word])
        elif word.startswith("-"):
            raise _Decline()
        else:
            words.append(word)
        i += 1
    for name in ("since", "until", "larger_than", "smaller_than", "limit"):
        if len(values.get(name, [])) > 1:
            raise _Decline()  # the last one wins in the full CLI: not worth copying
    limit: int | None = None
    if "limit" in values:
        text = values["limit"][0]
        if not text.isascii() or not text.isdigit():
            raise _Decline()
        limit = int(text)
    quiet = quiet or "quiet" in flags
    json_ = json_ or "json" in flags
    if not json_ and sys.stdout.isatty():
        raise _Decline()  # a person's rendering (rich): the full command's

    import gc

    from livedata_cli.index import search as core

    def one(name: str) -> str | None:
        found = values.get(name)
        return found[0] if found else None

    since, until = one("since"), one("until")
    larger, smaller = one("larger_than"), one("smaller_than")
    text = " ".join(words)
    filters = core.Filters(
        tags=values.get("tag", []),
        types=values.get("type", []),
        since=core.parse_when(since, "--since") if since else None,
        until=core.parse_when(until, "--until", end_of_day=True) if until else None,
        larger_than=core.parse_size(larger, "--larger-than") if larger else None,
        smaller_than=core.parse_size(smaller, "--smaller-than") if smaller else None,
        trash="trash" in flags,
        all_versions="all_versions" in flags,
    )
    for kind in filters.types:
        core.type_condition(kind)
    has_words = core.parse_query(text) is not None
    if not has_words and filters.empty():
        raise _Decline()
    if limit is None:
        limit = _DEFAULT_LIMIT if has_words else 0
    _index_path()
    gc.disable()  # as the full command: thousands of short-lived objects, no cycles
    results = core.search(core.open_index(), text, filters, limit=limit or None)
    if json_:
        return _emit(
            {
                "query": text,
                "results": [h.to_json() for h in results.hits],
                "count": len(results.hits),
                "truncated": results.truncated,
            }
        )
    from livedata_cli.names import shown, shown_tags
    from livedata_cli.sizes import human_size

    day = _Days()
    lines = [
        "\t".join(
            (shown(h.path), human_size(h.size), day(h.created), shown_tags(h.tags),
             shown(core.plain_snippet(h.snippet)) if h.snippet else "")
        )
        for h in results.hits
    ]  # fmt: skip
    if not results.hits:
        said = "no match"
    elif results.truncated:
        said = f"first {len(results.hits)} results shown: --limit N for more, --limit 0 for all"
    else:
        said = ""

    def write() -> None:
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
        if said and not quiet:
            sys.stdout.flush()
            sys.stderr.write(said + "\n")

    return write


class _Days:
    """Local dates of times, one strftime per quarter hour (as the full command)."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        import time

        key = int(t // 900)
        day = self.seen.get(key)
        if day is None:
            day = self.seen[key] = time.strftime("%Y-%m-%d", time.localtime(t))
        return day
