"""The ``livedata`` command: a thin layer that parses, calls the core, renders.

``main()`` is the console script: it maps every :class:`LivedataError` to its
exit code and a one-line message, Ctrl-C to 130, and shows a traceback only
with ``--debug`` (never locals: a passphrase must not reach a terminal log).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from livedata_cli import __version__
from livedata_cli.cli import (
    account_cmds,
    account_data_cmds,
    audit_cmds,
    config_cmds,
    convert_cmds,
    files,
    history_cmds,
    keys_cmds,
    mount_cmds,
    password_cmds,
    search_cmds,
    server_cmds,
    share_cmds,
    vault_cmds,
)
from livedata_cli.cli.common import ENV, record_audit
from livedata_cli.cli.completion import completion
from livedata_cli.cli.doctor import doctor
from livedata_cli.errors import ConfigError, ExitCode, LivedataError

app = typer.Typer(
    name="livedata",
    help="A secure vault: files are encrypted on this machine, then stored in a folder, an S3 bucket or on a Live-Data server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"livedata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback on unexpected errors.")] = False,
    no_keyring: Annotated[
        bool, typer.Option("--no-keyring", help="Do not use the OS keyring (as LIVEDATA_NO_KEYRING=1).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-P", metavar="NAME",
            help="Use this profile of the config file (default: LIVEDATA_PROFILE). Example: --profile work",
        ),
    ] = None,
) -> None:
    """livedata keeps files encrypted with keys only you hold.

    Start with 'livedata init', then 'livedata upload FILE' and 'livedata download FILE'.
    """
    ENV.json, ENV.quiet, ENV.debug, ENV.no_keyring = json_, quiet, debug, no_keyring
    from livedata_cli import settings

    settings.use_profile(profile)
    try:
        config_cmds.apply_profile(ctx, json_flag=json_, quiet_flag=quiet, no_keyring_flag=no_keyring)
    except ConfigError:
        if ctx.invoked_subcommand not in config_cmds.SELF_CONFIGURED:
            raise


vault_cmds.register(app)
files.register(app)
search_cmds.register(app)
history_cmds.register(app)
mount_cmds.register(app)
app.add_typer(keys_cmds.app, name="keys")
app.add_typer(audit_cmds.app, name="audit")
app.add_typer(config_cmds.app, name="config")
app.add_typer(server_cmds.app, name="server")
app.add_typer(convert_cmds.app, name="convert")
app.add_typer(share_cmds.app, name="share")
app.add_typer(password_cmds.app, name="password")
account_cmds.register_commands(app)
account_data_cmds.register(account_cmds.account_app)
app.command()(doctor)
app.command()(completion)


# Python packages that only an extra installs: `livedata server` without them is
# a usage error naming the install line, not a traceback.
OPTIONAL_PACKAGES = {
    **dict.fromkeys(
        ("fastapi", "uvicorn", "sqlalchemy", "psycopg", "jwt", "pyotp", "limits", "redis", "prometheus_client"),
        "server",
    ),
    "PIL": "convert",
    "mfusepy": "mount",
}


def _only(args: list[str]) -> typer.Typer | None:
    """The app with just the command being run (and the global options).

    Building Click's tree for every command costs ~25 ms per start; a run needs
    one branch (``--version`` none).  Help, completion and unknown names get
    the whole tree.
    """
    if "_LIVEDATA_COMPLETE" in os.environ or any(a in ("-h", "--help") for a in args):
        return None
    takes_value = {"--profile", "-P"}
    name, skip = None, False
    for a in args:
        if skip:
            skip = False
        elif a in takes_value:
            skip = True
        elif not a.startswith("-"):
            name = a
            break
    if name is None and "--version" not in args:
        return None
    commands = [c for c in app.registered_commands if typer.main.get_command_name(
        c.name or c.callback.__name__) == name]  # type: ignore[union-attr]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is not None and not commands and not groups:
        return None  # a misspelt command: the whole tree, to suggest the right one
    small = typer.Typer(**{k: getattr(app.info, k) for k in ("name", "help", "no_args_is_help")},
                        add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                        context_settings={"help_option_names": ["-h", "--help"]})
    small.registered_callback = app.registered_callback
    small.registered_commands = commands
    small.registered_groups = groups
    return small


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (DESIGN §6); the audit trail records it."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = _dispatch(args)
        record_audit(args, code)
    except KeyboardInterrupt:  # after the command's own end (the audit trail): no traceback
        from livedata_cli import interrupt

        if not interrupt.was_said():
            _error("interrupted")
        code = int(ExitCode.INTERRUPTED)
    return code


def _dispatch(args: list[str]) -> int:
    ENV.reset()  # fresh state when called twice in one process (tests)
    from livedata_cli import settings

    settings.reset()
    if "_LIVEDATA_COMPLETE" in os.environ:  # a Tab in bash, zsh or fish (cli/completion.py)
        from livedata_cli.cli.completion import register_shells

        register_shells()
    ENV.debug = "--debug" in args
    command = typer.main.get_command(_only(args) or app)
    try:
        result = command.main(args=args, prog_name="livedata", standalone_mode=False)
        sys.stdout.flush()  # here, so a reader gone away (| head) is caught below, not at exit
        if result == ExitCode.INTERRUPTED:  # Typer turns Ctrl-C into a silent return of 130
            _error("interrupted")
        return int(result) if isinstance(result, int) else 0
    except LivedataError as e:
        return _fail(e)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        _error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        _error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return _reader_gone()
    except ModuleNotFoundError as e:
        extra = OPTIONAL_PACKAGES.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        _error(f"this needs the optional '{extra}' packages ({e.name} is missing): pip install 'livedata[{extra}]'")
        return int(ExitCode.USAGE)
    except SystemExit:
        from typer._click.utils import PacifyFlushWrapper

        if isinstance(sys.stdout, PacifyFlushWrapper):  # Typer's own EPIPE handling exits 1
            return _reader_gone()
        raise
    except Exception as e:
        from typer._click.exceptions import ClickException

        from livedata_cli import envfail

        known = envfail.translate(e)
        if known is not None:  # a full disk, a read-only or vanished store: not a bug
            return _fail(known)
        if isinstance(e, ClickException):
            # One line, as for every other error, with where to look next.
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _error(e.format_message() + hint)
            return int(e.exit_code)
        if ENV.debug:
            import traceback

            traceback.print_exc()
        from livedata_cli.index.recovery import as_index_error

        damaged = as_index_error(e)  # a damaged page of the index, found mid-command
        if damaged is not None:
            _error(damaged.message)
            return int(damaged.exit_code)
        _error(f"unexpected error: {type(e).__name__}: {e} (run with --debug for details)")
        return int(ExitCode.UNEXPECTED)


def _reader_gone() -> int:
    """The reader of stdout went away (``| head``): not an error of ours.  Point
    stdout at /dev/null so the interpreter's final flush does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return 0


def _error(message: str) -> None:
    if message == "interrupted":
        from livedata_cli import interrupt

        interrupt.said()
    from livedata_cli.names import shown

    sys.stderr.write(f"livedata: error: {shown(message)}\n")  # a name in it never drives the terminal


def _fail(e: LivedataError) -> int:
    """One line on stderr; with ``--json`` also the command's document, when it
    printed none, with the error and exit code in it."""
    _error(e.message)
    if ENV.json and not ENV.emitted:
        doc = dict(getattr(e, "document", None) or {})
        doc.update(error=e.message, exit_code=int(e.exit_code))
        try:
            ENV.emit(doc)
        except BrokenPipeError:
            _reader_gone()
    return int(e.exit_code)
