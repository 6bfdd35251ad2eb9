"""The doctor command: what works, what does not, and what to do about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from livedata_cli.cli.common import Env, JsonOpt, QuietOpt, open_vault, setup

if TYPE_CHECKING:
    from livedata_cli.doctor import Check

_MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}


def doctor(
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair what can be: a damaged index is moved aside and rebuilt from the store.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check the config file, versions, the OS keyring and passphrase fallbacks, the store and the index.

    Exits 0 when nothing failed (warnings allowed), else with the exit code of
    the first failing check: 2 config, 3 no vault, 4 no way to unlock,
    5 index or store damaged, 6 store unreachable.
    Example: livedata doctor --fix
    """
    env = setup(json_, quiet)
    from livedata_cli import doctor

    checks = doctor.run(use_keyring=not env.no_keyring, can_prompt=env.can_prompt())
    fixed: list[str] = []
    if fix:
        fixed = _fix(env, checks)
        if fixed:
            checks = doctor.run(use_keyring=not env.no_keyring, can_prompt=env.can_prompt())
    code = doctor.exit_code(checks)
    if env.json:
        env.emit(
            {
                "ok": code == 0,
                "exit_code": code,
                "checks": [c.to_json() for c in checks],
                "fixed": fixed,
                "versions": doctor.versions(),
            }
        )
    elif not env.quiet or code:
        for line in fixed:
            env.out(f"{env.paint('fix ', 'green')}  {line}")
        width = max(len(c.name) for c in checks)
        for c in checks:
            label, colour = _MARK[c.status]
            env.out(f"{env.paint(f'{label:<4}', colour)}  {c.name:<{width}}  {c.message}")
            if c.hint:
                env.out(f"{'':<4}  {'':<{width}}  -> {c.hint}")
        problems = [c for c in checks if c.status != "ok"]
        summary = "all good" if not problems else f"{len(problems)} to look at"
        env.out(env.paint(summary, "red" if code else ("yellow" if problems else "green")))
    if code:
        first = next(c for c in checks if c.status == "fail")
        env.warn(f"livedata: error: doctor: {first.name}: {first.message}")
        raise typer.Exit(code)


def _fix(env: Env, checks: list[Check]) -> list[str]:
    """Repair the index when its check failed: moved aside, rebuilt from the store."""
    index = next((c for c in checks if c.name == "index"), None)
    store = next((c for c in checks if c.name == "store"), None)
    if index is None or index.status != "fail" or (store is not None and store.status == "fail"):
        return []
    from livedata_cli import settings

    path = settings.home() / settings.INDEX_FILE
    with open_vault(env, recover_index=True) as vault:
        result = vault.sync(rebuild=True)
    aside = sorted(path.parent.glob(f"{path.name}.damaged-*"))
    where = f"moved the damaged index to {aside[-1]}; " if aside else ""
    return [f"{where}rebuilt the index from the store: {result.versions} version(s)"]
