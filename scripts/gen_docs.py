#!/usr/bin/env python3
"""Write man/ (roff pages) and completions/ from the command definitions.

    python scripts/gen_docs.py          # (re)write every page and script   (make docs)
    python scripts/gen_docs.py --check  # exit 1 and name what is stale     (a test runs this)

One page per command and per command group (livedata-keys.1, livedata-keys-add.1)
and an overview page, livedata.1, with the global options, every command, the
configuration, environment, files, exit status and the examples.  The pages
are built from ``typer.main.get_command(app)`` (Typer vendors its own Click,
so click-man cannot see the tree).  Output is deterministic: no dates, the
commands in the order ``livedata --help`` shows them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import typer  # noqa: E402

from livedata_cli import __version__  # noqa: E402
from livedata_cli.cli import app  # noqa: E402
from livedata_cli.cli.completion import FILES, SCRIPTS  # noqa: E402
from livedata_cli.errors import ExitCode  # noqa: E402
from livedata_cli.settings import SETTINGS  # noqa: E402

EXIT_MEANINGS = {
    ExitCode.OK: "Success.",
    ExitCode.UNEXPECTED: "Unexpected error: a bug (\\-\\-debug shows the traceback).",
    ExitCode.USAGE: "Usage error: a bad option, vault path or config file, or two passphrase sources set; "
    "the index home or a download target cannot be written.",
    ExitCode.NOT_FOUND: "Not found: file, version, vault, or an object missing from the store.",
    ExitCode.AUTH: "Authentication: wrong passphrase, or no unlocked key and no way to ask for one.",
    ExitCode.INTEGRITY: "Integrity: tampered, truncated or foreign data.",
    ExitCode.UNREACHABLE: "The store is unreachable: not answering within about a minute, read-only, or gone.",
    ExitCode.REFUSED: "Refused by a limit: no space left (store, index home or download target), "
    "the vault lock is held, a quota is full.",
    ExitCode.PARTIAL: "Partial: some items of a batch failed, the rest succeeded (\\-\\-json lists which).",
    ExitCode.INTERRUPTED: "Interrupted (Ctrl\\-C).",
}

# Variables that are not settings of the config file (those come from SETTINGS).
OTHER_ENVIRONMENT = [
    ("LIVEDATA_HOME", "The base home: the config file, the default vault's settings and index, and the default "
     "local store live under it. Default: ~/.local/share/livedata (the config file: ~/.config/livedata/config.toml)."),
    ("LIVEDATA_PROFILE", "The profile to use when \\-\\-profile is not given."),
    ("LIVEDATA_PASSPHRASE", "The vault passphrase, for scripts (only one of the LIVEDATA_PASSPHRASE* variables may be set)."),
    ("LIVEDATA_NEW_PASSPHRASE", "The new passphrase for keys passwd and keys add, for scripts."),
    ("NO_COLOR", "When set, no colours (colours appear only on a terminal anyway)."),
    ("LIVEDATA_TESTONLY_WEAKEN_KDF", "Test suites only: a cheap Argon2id, refused without LIVEDATA_TESTONLY_RUN. Never for a real vault."),
    ("LIVEDATA_TESTONLY_RUN", "The test run's name: the marker LIVEDATA_TESTONLY_WEAKEN_KDF needs."),
]

DESCRIPTION = """\
livedata encrypts every file on this machine (AES\\-256\\-GCM, streamed, a fresh key per file version) \
before anything reaches the store, keeps versions, tags and a trash, and gives back exactly what was \
stored or a clear error, never silently wrong bytes. The store sees random ids and ciphertext only: \
no contents, no file names, no folder names, no tags.

Every command takes \\fB\\-\\-json\\fR (one JSON document on stdout, nothing else; the shapes are \
documented in docs/json.md) and \\fB\\-\\-quiet\\fR. Data goes to stdout, messages and errors to stderr, \
each error as one line starting with "livedata:". Colours and progress bars appear only on a terminal, \
and never with NO_COLOR.

The vault key is cached in the OS keyring once unlocked. Without a usable keyring (cron, CI, containers) \
it comes from LIVEDATA_PASSPHRASE, LIVEDATA_PASSPHRASE_FILE or LIVEDATA_PASSPHRASE_COMMAND, else from a \
prompt on a terminal; \\fBlivedata doctor\\fR says which one will be used."""

CONFIGURATION = """\
Settings come from, highest first: a command\\-line flag, an environment variable, the config file, \
the built\\-in default. The config file is TOML: $LIVEDATA_HOME/config.toml when LIVEDATA_HOME is set, \
else ~/.config/livedata/config.toml. Its top\\-level keys apply when no profile is chosen; a table \
[profiles.NAME] holds a profile's settings, chosen with \\fB\\-\\-profile\\fR NAME or LIVEDATA_PROFILE \
(profiles inherit nothing from the top level). Each profile is its own vault, with its own home: \
the profile's \\fBhome\\fR, or $LIVEDATA_HOME/profiles/NAME. Unknown keys and values of the wrong type \
are errors (exit 2) naming the file and line. \\fBlivedata config set\\fR edits the file and keeps its \
comments."""

FILES_TEXT = [
    ("config.toml", "Settings and profiles (see CONFIGURATION); created mode 0600."),
    ("vault.json", "In the home: the store's location and the vault id (no secrets)."),
    ("index.sqlite", "In the home: the local index, a cache of the store's journals (mode 0600: it holds "
     "file names in the clear); livedata sync \\-\\-rebuild recreates it."),
    ("store/", "In the home: the default local store (encrypted objects only)."),
]


# -- roff helpers ------------------------------------------------------------------
def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and control characters at line starts."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def raw(text: str) -> str:
    """Text already holding roff escapes: only protect line starts."""
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(text: str) -> tuple[list[str], list[str]]:
    """A help text's paragraphs (lines joined) and its Example: lines."""
    examples: list[str] = []
    paras: list[str] = []
    current: list[str] = []
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped.startswith("Example:"):
            examples.append(stripped[len("Example:"):].strip())
            continue
        if not stripped:
            if current:
                paras.append(" ".join(current))
                current = []
            continue
        current.append(stripped)
    if current:
        paras.append(" ".join(current))
    return paras, examples


METAVARS = {"str": "TEXT", "text": "TEXT", "int": "N", "integer": "N", "int range": "N", "float": "NUMBER", "path": "PATH"}


def short_help(cmd: Any) -> str:
    """The first sentence of a command's help."""
    paras, _ = paragraphs(cmd.help or "")
    first = paras[0] if paras else ""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", first)[0].rstrip(".")


def page_name(path: list[str]) -> str:
    return "-".join(["livedata", *path])


def header(name: str) -> list[str]:
    return [
        '.\\" Generated by scripts/gen_docs.py from the command definitions; do not edit.',
        f'.TH {esc(name.upper())} 1 "" "livedata {__version__}" "User Commands"',
    ]


def option_entry(param: Any) -> list[str]:
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in [*param.opts, *param.secondary_opts])
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        choices = getattr(param.type, "choices", None)
        if choices:
            metavar = "|".join(str(getattr(c, "value", c)) for c in choices)
        else:
            metavar = param.metavar or METAVARS.get(param.type.name, param.type.name.upper())
        names += f" \\fI{esc(metavar)}\\fR"
    text = param.help or ""
    default = param.default
    if default not in (None, False, "", (), []) and not callable(default) and not getattr(param, "is_flag", False):
        text += f" Default: {getattr(default, 'value', default)}."
    return [".TP", names, esc(text)]


def argument_name(param: Any) -> str:
    name = (param.metavar or param.name or "").upper()
    return name + ("..." if param.nargs == -1 else "")


def synopsis(path: list[str], cmd: Any) -> str:
    parts = [f"\\fBlivedata {esc(' '.join(path))}\\fR"]
    if is_group(cmd):
        parts.append("\\fICOMMAND\\fR [\\fIARGS\\fR]...")
        return " ".join(parts)
    if any(p.param_type_name == "option" and not p.hidden for p in cmd.params):
        parts.append("[\\fIOPTIONS\\fR]")
    for p in cmd.params:
        if p.param_type_name == "argument":
            arg = f"\\fI{esc(argument_name(p))}\\fR"
            parts.append(arg if p.required else f"[{arg}]")
    return " ".join(parts)


def is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")


def commands_of(group: Any) -> list[tuple[str, Any]]:
    return [(n, c) for n, c in group.commands.items() if not getattr(c, "hidden", False)]


def walk(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = []
    for name, cmd in commands_of(group):
        out.append(([*path, name], cmd))
        if is_group(cmd):
            out.extend(walk(cmd, [*path, name]))
    return out


# -- pages -------------------------------------------------------------------------
def command_page(path: list[str], cmd: Any) -> str:
    name = page_name(path)
    paras, examples = paragraphs(cmd.help or "")
    lines = header(name)
    lines += [".SH NAME", f"{esc(name)} \\- {esc(short_help(cmd))}"]
    lines += [".SH SYNOPSIS", synopsis(path, cmd)]
    lines += [".SH DESCRIPTION"]
    for i, p in enumerate(paras):
        if i:
            lines.append(".PP")
        lines.append(esc(p))
    if is_group(cmd):
        lines.append(".SH COMMANDS")
        for sub_name, sub in commands_of(cmd):
            lines += [".TP", f"\\fB{esc(sub_name)}\\fR", esc(short_help(sub)) + f". See \\fB{esc(page_name([*path, sub_name]))}\\fR(1)."]
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    if arguments:
        lines.append(".SH ARGUMENTS")
        for p in arguments:
            lines += [".TP", f"\\fI{esc(argument_name(p))}\\fR", esc(getattr(p, "help", None) or "")]
    options = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    if options:
        lines.append(".SH OPTIONS")
        for p in options:
            lines += option_entry(p)
        lines += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "Show the help and exit."]
    lines += [".PP", "The global options of \\fBlivedata\\fR(1) (\\-\\-profile, \\-\\-no\\-keyring, \\-\\-debug) go before the command name."]
    if examples:
        lines.append(".SH EXAMPLES")
        for ex in examples:
            lines += [".PP", ".nf", ".RS 4", esc(ex), ".RE", ".fi"]
    lines += [
        ".SH EXIT STATUS",
        "0 on success; otherwise one of the codes listed in \\fBlivedata\\fR(1), with one line on stderr.",
        ".SH SEE ALSO",
        ", ".join(f"\\fB{esc(n)}\\fR(1)" for n in _see_also(path)),
    ]
    return "\n".join(lines) + "\n"


def _see_also(path: list[str]) -> list[str]:
    out = ["livedata"]
    if len(path) > 1:
        out.append(page_name(path[:-1]))
    return out


def main_page(root: Any, tree: list[tuple[list[str], Any]]) -> str:
    lines = header("livedata")
    lines += [".SH NAME", f"livedata \\- {esc((root.help or '').strip().rstrip('.'))}"]
    lines += [".SH SYNOPSIS", "\\fBlivedata\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
              ".br", "\\fBlivedata\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR"]
    lines.append(".SH DESCRIPTION")
    for i, p in enumerate(DESCRIPTION.split("\n\n")):
        if i:
            lines.append(".PP")
        lines.append(raw(p))
    lines.append(".SH GLOBAL OPTIONS")
    for p in root.params:
        if p.param_type_name == "option" and not p.hidden:
            lines += option_entry(p)
    lines += [".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "Show the help and exit."]
    lines.append(".SH COMMANDS")
    for path, cmd in tree:
        usage = synopsis(path, cmd)
        lines += [".TP", usage, esc(short_help(cmd)) + f". See \\fB{esc(page_name(path))}\\fR(1)."]
    lines += [".SH CONFIGURATION", raw(CONFIGURATION), ".PP", "Settings:"]
    for s in SETTINGS.values():
        env = f" (environment: {s.env})" if s.env else ""
        flag = f" (flag: {s.flag})" if s.flag else ""
        kind = "true or false" if s.kind is bool else "whole number" if s.kind is int else "string"
        lines += [".TP", f"\\fB{esc(s.name)}\\fR = \\fI{kind}\\fR", esc(s.help + env + flag)]
    lines += [".PP", "Example:", ".PP", ".nf", ".RS 4"]
    lines += [esc(line) for line in (
        "# ~/.config/livedata/config.toml",
        "no_keyring = false",
        "",
        "[profiles.work]",
        'store = "/media/usb/work-vault"',
        'passphrase_file = "~/.config/livedata/work.pass"',
    )]
    lines += [".RE", ".fi"]
    lines.append(".SH ENVIRONMENT")
    env_vars = [(s.env, s.help + f" Same as the setting {s.name}.") for s in SETTINGS.values() if s.env]
    for var, text in sorted([*OTHER_ENVIRONMENT, *env_vars], key=lambda x: x[0] or ""):
        lines += [".TP", f"\\fB{esc(var or '')}\\fR", raw(text) if "\\-" in text else esc(text)]
    lines.append(".SH FILES")
    for name, text in FILES_TEXT:
        lines += [".TP", f"\\fI{esc(name)}\\fR", raw(text)]
    lines.append(".SH EXIT STATUS")
    missing = [c for c in ExitCode if c not in EXIT_MEANINGS]
    if missing:
        raise SystemExit(f"gen_docs: no meaning for exit codes {missing}: add them to EXIT_MEANINGS")
    for code in ExitCode:
        lines += [".TP", f"\\fB{int(code)}\\fR", raw(EXIT_MEANINGS[code])]
    lines.append(".SH EXAMPLES")
    for _path, cmd in tree:
        for ex in paragraphs(cmd.help or "")[1]:
            lines += [".PP", ".nf", ".RS 4", esc(ex), ".RE", ".fi"]
    lines += [".SH SEE ALSO", ",\n".join(f"\\fB{esc(page_name(p))}\\fR(1)" for p, _ in tree)]
    lines += [".PP", "The container format: docs/container\\-format.md in the source. JSON shapes: docs/json.md."]
    return "\n".join(lines) + "\n"


# Arguments that name vault paths: a Tab offers the index's paths for them.
VAULT_ARGS = {"ref", "refs", "prefix", "paths"}


def _arg_kind(param: Any) -> str:
    if param.name in VAULT_ARGS:
        return "vault"
    if getattr(param.type, "choices", None):
        return "choice:" + "\n".join(map(str, param.type.choices))
    custom = getattr(param, "_custom_shell_complete", None)
    if custom is not None:  # a static list, such as the config keys
        return "choice:" + "\n".join(str(getattr(c, "value", c)) for c in custom(None, param, ""))
    return "other"


def command_table(root: Any, tree: list[tuple[list[str], Any]]) -> str:
    """The table livedata_cli/_start.py answers a Tab from, without loading Typer."""
    def entry(cmd: Any) -> dict[str, Any]:
        options = []
        for p in cmd.params:
            if p.param_type_name == "option" and not p.hidden:
                choices = list(map(str, p.type.choices)) if getattr(p.type, "choices", None) else None
                options.append({
                    "names": [*p.opts, *p.secondary_opts], "value": not p.is_flag and not p.count,
                    "help": _one_line_help(p.help), **({"choices": choices} if choices else {}),
                })
        options.append({"names": ["--help", "-h"], "value": False, "help": "Show this message and exit."})
        out: dict[str, Any] = {"options": options}
        if is_group(cmd):
            out["commands"] = {name: short_help(c) for name, c in commands_of(cmd)}
            if getattr(cmd, "default_command", None):  # `share REF` is `share create REF`
                out["default"] = cmd.default_command
        else:
            out["args"] = [_arg_kind(p) for p in cmd.params if p.param_type_name == "argument"]
        return out

    table = {"": entry(root), **{" ".join(path): entry(cmd) for path, cmd in tree}}
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def _one_line_help(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def generate() -> dict[Path, str]:
    """Every generated file, by path relative to the repository."""
    root = typer.main.get_command(app)
    tree = walk(root, [])
    out: dict[Path, str] = {Path("man/livedata.1"): main_page(root, tree)}
    out[Path("livedata_cli/commands.json")] = command_table(root, tree)
    for path, cmd in tree:
        out[Path(f"man/{page_name(path)}.1")] = command_page(path, cmd)
    for shell, (repo_path, _installed) in FILES.items():
        out[Path(repo_path)] = SCRIPTS[shell]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args()
    wanted = generate()
    existing = {p.relative_to(ROOT) for p in (ROOT / "man").glob("*.1")}
    stale = sorted(str(p) for p, text in wanted.items() if not (ROOT / p).exists() or (ROOT / p).read_text() != text)
    extra = sorted(str(p) for p in existing - set(wanted))
    if args.check:
        if stale or extra:
            for p in stale:
                print(f"stale: {p}", file=sys.stderr)
            for p in extra:
                print(f"no longer a command: {p}", file=sys.stderr)
            print("run 'make docs' to regenerate man/ and completions/", file=sys.stderr)
            return 1
        return 0
    for p in stale:
        (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / p).write_text(wanted[Path(p)])
    for p in extra:
        (ROOT / p).unlink()
    print(f"gen_docs: {len(wanted)} files, {len(stale)} written, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
