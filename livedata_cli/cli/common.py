"""What every command shares: output conventions, prompts, progress, opening the vault.

Data goes to stdout (one JSON document with ``--json``), people's messages to
stderr.  Progress shows only when stderr is a terminal and the work lasts
over a second, so cron mail stays clean.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from livedata_cli.errors import UsageError
from livedata_cli.sizes import human_size as human_size  # for the commands

if TYPE_CHECKING:
    from livedata_cli.vault.reports import BatchReport

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
NoHeaderOpt = Annotated[
    bool, typer.Option("--no-header", help="No header line above the table (it shows only on a terminal anyway).")
]


def one_line(secret: str, what: str = "passphrase") -> str:
    """A new passphrase must be one line: a passphrase file, a command's output
    and a prompt give one, so one with a line break could never be given again."""
    if "\n" in secret or "\r" in secret:
        raise UsageError(f"a {what} cannot hold a line break: a passphrase file, command or prompt gives one line")
    return secret


@dataclass
class Env:
    """The terminal and the global options, decided once per process."""

    json: bool = False
    quiet: bool = False
    debug: bool = False
    no_keyring: bool = False
    emitted: bool = False  # the JSON document went out
    stdin_tty: bool = field(default_factory=lambda: sys.stdin.isatty())
    stdout_tty: bool = field(default_factory=lambda: sys.stdout.isatty())
    stderr_tty: bool = field(default_factory=lambda: sys.stderr.isatty())

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @property
    def color(self) -> bool:
        return self.stderr_tty and "NO_COLOR" not in os.environ

    def paint(self, text: str, colour: str, *, stderr: bool = False) -> str:
        """``text`` in an ANSI colour (red, green, yellow, bold) only when that
        stream is a terminal, NO_COLOR is unset and the output is not JSON."""
        tty = self.stderr_tty if stderr else self.stdout_tty
        if not tty or self.json or "NO_COLOR" in os.environ:
            return text
        code = {"red": "31", "green": "32", "yellow": "33", "bold": "1"}[colour]
        return f"\x1b[{code}m{text}\x1b[0m"

    # -- output ------------------------------------------------------------
    def emit(self, data: Any) -> None:
        """The one JSON document of a ``--json`` run."""
        self.emitted = True
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def out(self, text: str = "") -> None:
        """A line of data for stdout (human form)."""
        sys.stdout.write(text + "\n")

    def say(self, text: str) -> None:
        """A message for the person at the terminal: stderr, not with --quiet or --json."""
        if not self.quiet and not self.json:
            sys.stderr.write(text + "\n")

    def warn(self, text: str) -> None:
        sys.stderr.write(text + "\n")

    def note(self, text: str) -> None:
        """A notice worth a line on a terminal but not a cron mail: stderr, not with --quiet."""
        if not self.quiet:
            sys.stderr.write(text + "\n")

    # -- prompts -----------------------------------------------------------
    def prompt(self, label: str) -> str:
        import getpass

        try:
            return getpass.getpass(label)
        except EOFError:
            raise typer.Abort() from None

    def can_prompt(self) -> bool:
        return self.stdin_tty

    def new_secret(self, what: str = "passphrase") -> str:
        """A new passphrase: from the environment in scripts, asked twice on a terminal."""
        from livedata_cli.errors import NoPassphrase
        from livedata_cli.keys.unlock import NO_PASSPHRASE_HELP, passphrase_from_env

        found = passphrase_from_env()
        if found is not None:
            secret = found[0]
        elif self.can_prompt():
            secret = self.prompt(f"New {what}: ")
            if secret != self.prompt(f"Repeat the {what}: "):
                raise UsageError(f"the two {what}s differ; nothing was changed")
        else:
            raise NoPassphrase(NO_PASSPHRASE_HELP)
        if not secret:
            raise UsageError(f"an empty {what} is not allowed")
        return one_line(secret, what)

    def ask_file_password(self, path: str) -> str | None:
        """A file's password: LIVEDATA_FILE_PASSWORD in scripts, else asked on a terminal."""
        found = os.environ.get("LIVEDATA_FILE_PASSWORD")
        if found:
            return found
        return self.prompt(f"File password for {path}: ") if self.can_prompt() else None

    def new_file_password(self, variable: str = "LIVEDATA_FILE_PASSWORD") -> str:
        """A new file password: from ``variable`` in scripts, asked twice on a terminal."""
        from livedata_cli.errors import AuthError

        secret = os.environ.get(variable)
        if not secret:
            if not self.can_prompt():
                raise AuthError(f"a file password is needed: set {variable}, or run on a terminal to be asked")
            secret = self.prompt("New file password: ")
            if secret != self.prompt("Repeat the file password: "):
                raise UsageError("the two file passwords differ; nothing was changed")
        if not secret:
            raise UsageError("an empty file password is not allowed")
        return secret

    def unlocker(self) -> Any:
        from livedata_cli.keys.unlock import Unlocker

        return Unlocker(
            use_keyring=not self.no_keyring,
            prompt=self.prompt if self.can_prompt() else None,
            notice=self.note,
        )

    def relogin(self, server: str, email: str) -> tuple[str, Callable[[], str | None]] | None:
        """Asked when the session with a server has ended: the password (and the TOTP code
        when the account asks for one) from the terminal, or None to end with exit 4."""
        if not self.can_prompt():
            return None
        self.warn(f"The session with {server} has ended: log in again as {email}.")
        password = self.prompt("Password: ")
        return password, lambda: self.prompt("Code from your authenticator app: ").strip() or None

    # -- progress ----------------------------------------------------------
    @contextmanager
    def progress(self, total: int | None, label: str) -> Iterator[Any]:
        """A callback taking byte counts; draws a bar only on a TTY after one second."""
        bar = _LazyBar(total, label, enabled=self.stderr_tty and not self.json and not self.quiet)
        try:
            yield bar
        finally:
            bar.close()


class _LazyBar:
    def __init__(self, total: int | None, label: str, *, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self.t0 = time.monotonic()
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self.t0 < 1.0:
                return
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(binary_units=True),  # GiB, as every summary says
                _speed_column(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.done)
        else:
            self._progress.update(self._task, completed=self.done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _speed_column() -> Any:
    """rich's transfer speed in IEC units (its own column has only SI ones)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("?" if speed is None else f"{human_size(int(speed))}/s", style="progress.data.speed")

    return Speed()


ENV = Env()


def setup(json_: bool = False, quiet: bool = False) -> Env:
    """Merge a command's own --json/--quiet into the global environment."""
    ENV.json = ENV.json or json_
    ENV.quiet = ENV.quiet or quiet
    from livedata_cli import netwait, notices

    notices.notice = ENV.warn  # e.g. the test-only weak KDF, announced when used

    netwait.set_notice(None if ENV.quiet else ENV.warn)  # retries of a silent server, as they happen
    if ENV.can_prompt():  # an ended session asks to log in again instead of exit 4
        from livedata_cli.remote import account

        account.set_relogin(ENV.relogin)
    return ENV


def _took(seconds: float) -> str:
    """A command's time: milliseconds when it is under a tenth of a second (a
    restore from the page cache), so a summary never says ``0.00s``."""
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds:.2f}s"


def parse_when(text: str, option: str) -> float:
    """A point in time from an ISO date or date-time (local time unless it says),
    ``today``, ``yesterday``, or an age such as ``90m``, ``36h``, ``7d``, ``2w`` before now."""
    from livedata_cli.index.search import parse_when as parse

    return parse(text, option)


def human_time(t: float | None) -> str:
    if t is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError):  # a time no calendar here can show (a record from elsewhere)
        return "far future" if t > 0 else "far past"


@contextmanager
def open_vault(env: Env, *, recover_index: bool = False) -> Iterator[Any]:
    """The vault of this home, closed when the command ends (``recover_index``:
    a damaged index is moved aside, for a command that rebuilds it)."""
    from livedata_cli.vault.core import Vault

    _store_setting(env)
    vault = Vault.open(env.unlocker(), recover_index=recover_index)
    vault.ask_file_password = env.ask_file_password
    vault.events.name, vault.events.target = _audit_target()
    try:
        yield vault
    finally:
        vault.close()


def _store_setting(env: Env) -> None:
    """``LIVEDATA_STORE`` is honoured by every command, as restic honours
    RESTIC_REPOSITORY: a home with no vault attaches to the vault in that store
    (never creates one), and a home whose vault lives elsewhere is refused
    rather than silently used.  (The config file's ``store`` is what ``init``
    uses; the vault a home attached to is its own from then on.)"""
    from livedata_cli import settings

    wanted = settings.resolve("store")
    if wanted.source != "environment":
        return
    named = f"{wanted.where} ({wanted.value})"
    if settings.VaultSettings.exists():
        current = settings.VaultSettings.load().store
        if _same_store(current, str(wanted.value)):
            return
        raise UsageError(
            f"{named} names another store than this home's vault ({current}); "
            "unset it, or set LIVEDATA_HOME to a home of its own for that vault"
        )
    from livedata_cli.errors import VaultNotFound
    from livedata_cli.vault.core import Vault

    def refuse() -> str:
        raise VaultNotFound(f"{named} holds no vault: 'livedata init' creates one there")

    vault, _created = Vault.init(str(wanted.value), env.unlocker(), refuse)
    vault.close()
    env.note(f"livedata: attached to the vault in {wanted.value}")


def _same_store(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        url = url.removeprefix("file://")
        return url.rstrip("/") if "://" in url else os.path.realpath(os.path.expanduser(url))

    return norm(a) == norm(b)


def finish_batch(env: Env, report: BatchReport, verb: str) -> None:
    """Render a batch report and turn failures into exit 8 (or the single item's code)."""
    from livedata_cli.errors import ExitCode

    failed = report.failed
    if verb != "download":  # a download's failures are recorded where they happen
        from livedata_cli.audit import recorder

        recorder.current().failed_items(verb, failed)  # the vault's recorder, handed over when it closed
    from livedata_cli.names import shown

    for item in report.items:  # errors go to stderr with --json too
        if item.status == "failed" or (item.status == "skipped" and not env.json):
            kind = "error: " if item.status == "failed" else ""
            env.warn(f"livedata: {kind}{shown(f'{item.source or item.path}: {item.error}')}")
    if env.json:
        env.emit(report.to_json())
    elif not failed or len(failed) < len(report.items):
        counts = report.counts()
        parts = [f"{counts[k]} {k}" for k in ("new", "changed", "unchanged", "downloaded", "skipped", "failed") if counts.get(k)]
        stored = f", {human_size(report.bytes_stored)} stored" if report.bytes_stored else ""
        env.say(
            f"{verb}: {', '.join(parts) or 'nothing to do'} "
            f"({human_size(report.bytes_read)} read{stored} in {_took(report.duration)})"
        )
    if failed:
        # A rerun's restore: files found already restored did nothing, so
        # refusals alone decide the code (exit 2 for a differing file).
        acted = [i for i in report.items if not (verb == "download" and i.status == "unchanged")]
        if len(failed) == len(acted):
            codes = {i.exit_code for i in failed}
            raise typer.Exit(codes.pop() if len(codes) == 1 else int(ExitCode.PARTIAL))
        raise typer.Exit(int(ExitCode.PARTIAL))


# -- the audit trail -------------------------------------------------------------
# Commands that only look leave no event of their own (failed unlocks still do).
NOT_AUDITED = (
    "", "ls", "info", "search", "audit", "doctor", "keys ls", "share ls",
    "convert status", "convert formats", "server", "login", "logout", "register", "mfa", "account",
)
# Commands that change something without opening the vault.
VAULT_LESS = ("lock",)


def _audit_target() -> tuple[str, str]:
    """The running command (``keys passwd``) and what it was pointed at: its REF, slot or paths."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return "", ""
    name = ctx.command_path.partition(" ")[2]
    for key in ("ref", "slot_id", "prefix"):
        value = ctx.params.get(key)
        if isinstance(value, str) and value:
            return name, value
    paths = ctx.params.get("paths")
    if isinstance(paths, list | tuple) and paths:
        return name, " ".join(str(p) for p in paths)[:500]
    return name, ""


def record_audit(args: list[str], code: int) -> None:
    """Append what the command that just ended did to the audit trail.

    Called by ``main()`` with the exit code, so every command is covered
    without code of its own; a trail that cannot be written is a warning,
    never a changed exit code.
    """
    if any(a in ("--help", "-h", "--version") for a in args):
        return
    first = next((a for a in args if not a.startswith("-")), "")
    from livedata_cli.audit import recorder

    if not recorder.opened() and first not in VAULT_LESS:  # no vault registered with this command
        return
    name = recorder.current().name or first
    audited = not any(name == n or name.startswith(n + " ") for n in NOT_AUDITED)
    try:
        recorder.finish(name, code, audited=audited, vault_less=name in VAULT_LESS)
    except Exception as e:  # the command's own outcome stands
        from livedata_cli import envfail
        from livedata_cli.errors import LivedataError

        cause = e.__cause__ or e.__context__ or e
        if code in (6, 7) and (envfail.is_fatal(cause) or envfail.translate(cause) is not None):
            return  # the store or home failed (events stay in the index): the command's one line said so

        why = e.message if isinstance(e, LivedataError) else f"not written: {type(e).__name__}: {e}"
        ENV.warn(f"livedata: warning: audit trail: {why}")


def group_with_default(default: str) -> type[Any]:
    """A command group whose first word, when it is not one of its commands, starts
    ``default``: ``livedata share REF`` is ``livedata share create REF``."""
    from typer.core import TyperGroup

    class _WithDefault(TyperGroup):
        default_command = default  # shell completion reads it too (scripts/gen_docs.py)

        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
                args = [default, *args]
            return super().parse_args(ctx, args)

    return _WithDefault


def table(env: Env, header: Sequence[str], rows: Iterable[Sequence[str]], *, no_header: bool = False) -> None:
    """Rows in aligned columns, every cell escaped for the terminal; the header
    line only on a terminal (scripts read --json, or the bare rows)."""
    cells = [[printable(c) for c in row] for row in rows]
    if env.stdout_tty and not no_header:
        cells.insert(0, list(header))
    if not cells:
        return
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]) - 1)]
    for r in cells:
        env.out(("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]).rstrip())




def printable(text: str) -> str:
    """A stored name or note for a terminal: no control character reaches it raw
    (a name from a shared store could set the title or move the cursor), and
    bytes that are not UTF-8 show as ``\\xNN`` (see :func:`livedata_cli.names.shown`)."""
    from livedata_cli.names import shown

    return shown(text)
