"""The console script: ``--version``, every shell Tab and plain ``ls`` and
``search`` answered before the command tree loads (``quick.py`` for the last two).

Importing Typer and the command modules costs more than the whole answer of
``livedata --version`` or of a Tab should.  This module imports only the
standard library's small modules: a Tab is answered from ``commands.json``
(the command table ``scripts/gen_docs.py`` writes beside this file, kept
current by a test) and, for arguments that name vault paths, from the local
index read directly with :mod:`sqlite3` (read-only; no vault opened, no
config file parsed unless a profile is in play).  Everything else goes to
:func:`livedata_cli.entry.main`.

The completion protocol is the one the shipped scripts speak: the words in
``COMP_WORDS``, the cursor in ``COMP_CWORD``, ``_LIVEDATA_COMPLETE`` naming the
shell; one answer per line (bash ``plain,VALUE``; zsh ``plain``, VALUE, help
on three lines; fish ``plain,VALUE<TAB>help``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

COMPLETE_VAR = "_LIVEDATA_COMPLETE"
TABLE = Path(__file__).parent / "commands.json"
MAX_PATHS = 200  # vault paths offered for one Tab


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:
        from livedata_cli import __version__

        sys.stdout.write(f"livedata {__version__}\n")
        return 0
    mode = os.environ.get(COMPLETE_VAR, "")
    if mode.startswith("complete_") and _complete(mode.removeprefix("complete_")):
        return 0
    if "ls" in args or "search" in args:  # plain listings, read from the index without Typer
        from livedata_cli import quick

        if quick.command_at(args) is not None:
            from livedata_cli import interrupt

            interrupt.install()
            try:
                code = quick.run(args)
            except KeyboardInterrupt:
                return interrupt.finish(130)
            if code is not None:
                return interrupt.finish(code)
    from livedata_cli.entry import main as full  # Ctrl-C handled before the heavy imports

    return full()


def _complete(shell: str) -> bool:
    """Answer one Tab; False leaves it to the full command tree."""
    try:
        table = json.loads(TABLE.read_text())
    except (OSError, ValueError):
        return False
    from livedata_cli.shellwords import shell_words

    words, incomplete = shell_words(shell)
    answers = candidates(table, words, incomplete)
    if answers is None:
        return False
    out = []
    for value, help_ in answers:
        if shell == "bash":
            out.append(f"plain,{value}")
        elif shell == "zsh":
            out.append(f"plain\n{value.replace(':', chr(92) + ':') if help_ else value}\n{help_ or '_'}")
        elif shell == "fish":
            out.append(f"plain,{value}\t{help_}" if help_ else f"plain,{value}")
        else:
            return False
    sys.stdout.write("".join(line + "\n" for line in out))
    return True


def candidates(table: dict[str, Any], words: list[str], incomplete: str) -> list[tuple[str, str]] | None:
    """What may follow ``words``: subcommands, options, an option's choices, or
    vault paths; ``[]`` for nothing; None for "ask the full command tree"."""
    path, entry = "", table[""]
    positional: list[str] = []
    pending: dict[str, Any] | None = None  # an option waiting for its value
    profile: str | None = None
    for word in words:
        if pending is not None:
            if pending["names"][0] == "--profile":
                profile = word
            pending = None
            continue
        if word.startswith("-") and word != "-":
            opt = _option(entry, word.split("=", 1)[0])
            if opt is not None and opt["value"] and "=" not in word:
                pending = opt
            continue
        sub = entry.get("commands", {})
        if sub and not positional and word in sub:
            path = f"{path} {word}".strip()
            entry = table[path]
            continue
        if sub and "default" in entry:  # `share REF` is `share create REF`
            path = f"{path} {entry['default']}".strip()
            entry = table[path]
        positional.append(word)
    if pending is not None:
        choices = pending.get("choices")
        return [(c, "") for c in choices if c.startswith(incomplete)] if choices else []
    if incomplete.startswith("-"):
        return [
            (name, opt["help"])
            for opt in entry["options"]
            for name in opt["names"]
            if name.startswith(incomplete) and (name.startswith("--") or incomplete == "-")
        ]
    sub = entry.get("commands", {})
    if sub and not positional:
        names = [(name, help_) for name, help_ in sub.items() if name.startswith(incomplete)]
        if "default" not in entry:
            return names
        default = candidates(table, [*words, entry["default"]], incomplete)
        return names + (default or [])
    kinds: list[str] = entry.get("args", [])
    if not kinds:
        return []
    kind = kinds[min(len(positional), len(kinds) - 1)]
    if kind == "vault":
        return [(p, "") for p in vault_paths(incomplete, profile)]
    if kind.startswith("choice:"):
        return [(c, "") for c in kind.removeprefix("choice:").split("\n") if c.startswith(incomplete)]
    return []  # a local file or free text: the shell completes file names


def _option(entry: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((opt for opt in entry["options"] if name in opt["names"]), None)


def vault_paths(incomplete: str, profile: str | None = None) -> list[str]:
    """Live vault paths starting with ``incomplete``, folded at the next ``/``
    (``photos/`` rather than every photo), from the local index."""
    import sqlite3

    from livedata_cli.index import peek

    index = _home(profile) / "index.sqlite"
    if not index.exists():
        return []
    try:
        paths = peek.live_paths(index, incomplete)
    except sqlite3.Error:
        return []
    out: list[str] = []
    for path in paths:
        slash = path.find("/", len(incomplete))
        shown = path if slash < 0 else path[: slash + 1]
        if shown.isprintable() and (not out or out[-1] != shown):
            out.append(shown)
        if len(out) >= MAX_PATHS:
            break
    return out


def _home(profile: str | None) -> Path:
    """This home, as :func:`livedata_cli.settings.home` finds it; the config file is
    read only when a profile is chosen."""
    profile = profile or os.environ.get("LIVEDATA_PROFILE") or None
    if profile is not None:
        from livedata_cli import settings

        try:
            settings.use_profile(profile)
            found = settings.active_home()
            if found is not None:
                return found
        except Exception:  # a bad profile name or config file: no paths offered, no traceback in a Tab
            return Path("/nonexistent")
    env = os.environ.get("LIVEDATA_HOME")
    if env:
        return Path(env).expanduser().absolute()
    from platformdirs import user_data_path

    return user_data_path("livedata", appauthor=False)
