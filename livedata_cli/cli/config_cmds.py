"""Config commands: get, set, unset, list; and how the chosen profile reaches a command.

The file and its rules live in :mod:`livedata_cli.settings`; this module only
parses, calls and renders.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from livedata_cli.cli.common import ENV, JsonOpt, QuietOpt, setup

app = typer.Typer(
    help="Read and edit the config file (settings and profiles) without opening it.",
    no_args_is_help=True,
)

# Commands that read the config file themselves, so that a broken file can be
# reported (doctor) or inspected (config) instead of stopping them at the door.
SELF_CONFIGURED = {"config", "doctor", "completion"}


def apply_profile(ctx: typer.Context, *, json_flag: bool, quiet_flag: bool, no_keyring_flag: bool) -> None:
    """Merge flags, environment and the chosen profile into the Env (flag > env > file > default)."""
    from livedata_cli import settings

    ENV.json, ENV.quiet, ENV.no_keyring = json_flag, quiet_flag, no_keyring_flag
    ENV.json = json_flag or bool(settings.setting("json"))
    ENV.quiet = quiet_flag or bool(settings.setting("quiet"))
    ENV.no_keyring = no_keyring_flag or bool(settings.setting("no_keyring"))
    settings.export_to_environment()
    store = settings.resolve("store")
    if store.source != "default":
        # A default for --store: the flag still wins, as click gives the command line first say.
        ctx.default_map = {**(ctx.default_map or {}), "init": {"store": store.value}}


def _key_completion(incomplete: str) -> list[str]:
    from livedata_cli.settings import SETTINGS

    return [name for name in SETTINGS if name.startswith(incomplete)]


KeyArg = Annotated[
    str, typer.Argument(help="Setting name, e.g. store or passphrase_file.", autocompletion=_key_completion)
]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@app.command("list")
def list_(json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Show every setting's effective value and where it comes from (environment, file or default).

    Example: livedata --profile work config list
    """
    env = setup(json_, quiet)
    from livedata_cli import settings

    cfg = settings.current()
    profile = settings.active_profile()
    resolved = {name: settings.resolve(name) for name in settings.SETTINGS}
    if env.json:
        env.emit(
            {
                "file": str(cfg.path),
                "exists": cfg.exists,
                "profile": profile,
                "profiles": sorted(cfg.profiles),
                "settings": {name: r.to_json() for name, r in resolved.items()},
            }
        )
        return
    env.say(f"# {cfg.path}" + ("" if cfg.exists else " (not created yet)") + f"; profile: {profile or '(none)'}")
    width = max(len(n) for n in resolved)
    for name, r in resolved.items():
        origin = r.where if r.source != "default" else "default"
        value = _show(r.value) or "(unset)"
        env.out(f"{name:<{width}}  {value}  [{origin}]")


@app.command()
def get(key: KeyArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Print a setting's effective value; exit 3 when it has none.

    Example: livedata config get store
    """
    env = setup(json_, quiet)
    from livedata_cli import settings
    from livedata_cli.errors import NotFound, UsageError

    if key not in settings.SETTINGS:
        raise UsageError(f"unknown setting '{key}' (known: {', '.join(settings.SETTINGS)})")
    r = settings.resolve(key)
    if env.json:
        env.emit({"key": key, **r.to_json()})
        return
    if r.value is None:
        raise NotFound(f"'{key}' is not set")
    env.out(_show(r.value))


@app.command("set")
def set_(
    key: KeyArg,
    value: Annotated[str, typer.Argument(help="The value; true/false for switches.")],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a setting into the chosen profile's table (--profile), or the top level.

    Comments and the order of the file are kept; the file is created mode 0600.
    Example: livedata --profile work config set store /media/usb/vault
    """
    env = setup(json_, quiet)
    from livedata_cli import settings

    profile = settings.active_profile()
    path, stored = settings.set_value(key, value, profile)
    if env.json:
        env.emit({"file": str(path), "profile": profile, "key": key, "value": stored})
    else:
        env.say(f"{path}: {'[profiles.' + profile + '] ' if profile else ''}{key} = {_show(stored)}")


@app.command()
def unset(key: KeyArg, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Remove a setting from the chosen profile's table (--profile), or the top level.

    Example: livedata config unset passphrase_command
    """
    env = setup(json_, quiet)
    from livedata_cli import settings

    profile = settings.active_profile()
    path, removed = settings.unset_value(key, profile)
    if env.json:
        env.emit({"file": str(path), "profile": profile, "key": key, "removed": removed})
    else:
        env.say(f"{path}: {key} " + ("removed" if removed else "was not set there"))
