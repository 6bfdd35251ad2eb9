"""The checks behind ``livedata doctor``: read-only, each one independent.

Every check returns a :class:`Check` (ok, warn or fail, a one-line message, a
hint saying what to do, and details for ``--json``) and never raises: a broken
config file, an unreachable store or a damaged index is what doctor reports,
not what stops it.  A failing check carries the exit code the same problem
gives every other command; doctor exits with the first failing check's code.

Nothing here prints.  No secret is read: a passphrase file is only stat()ed,
a passphrase command is never run, and the keyring probe writes and removes a
random value under its own account name.
"""

from __future__ import annotations

import os
import platform
import secrets
import sqlite3
import stat
from dataclasses import dataclass, field
from typing import Any

from livedata_cli import __version__, settings
from livedata_cli.errors import ExitCode, LivedataError

PASSPHRASE_VARS = ("LIVEDATA_PASSPHRASE", "LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND")
PROBE_ACCOUNT = "livedata-doctor-probe"
CRON_HINT = (
    "for cron and CI: put the passphrase alone in a file only you can read "
    "(install -m 600 /dev/null ~/.config/livedata/passphrase, then edit it) and set "
    "LIVEDATA_PASSPHRASE_FILE=~/.config/livedata/passphrase in the crontab, "
    "or 'livedata config set passphrase_file ~/.config/livedata/passphrase'"
)


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    message: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "details": self.details,
        }


def _fail(name: str, err: LivedataError | OSError, hint: str | None = None, **details: Any) -> Check:
    if isinstance(err, LivedataError):
        return Check(name, "fail", err.message, hint, details, int(err.exit_code))
    return Check(name, "fail", f"{err.strerror or err}", hint, details, int(ExitCode.UNREACHABLE))


# -- config ------------------------------------------------------------------------
def check_config() -> Check:
    try:
        path = settings.config_path()
        cfg = settings.current()
        profile = settings.active_profile()
        home = settings.home()
    except LivedataError as e:
        return _fail("config", e, "fix the line named, or remove it with 'livedata config unset KEY'")
    details = {
        "file": str(cfg.path),
        "exists": cfg.exists,
        "profile": profile,
        "profiles": sorted(cfg.profiles),
        "home": str(home),
    }
    where = f"{path}" if cfg.exists else f"{path} (none yet: defaults apply)"
    using = f"profile '{profile}'" if profile else "no profile"
    return Check("config", "ok", f"{where}; {using}; home {home}", None, details)


# -- versions ----------------------------------------------------------------------
def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {
        "livedata": __version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
    }
    for dist in ("cryptography", "argon2-cffi", "keyring", "typer"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def check_versions() -> Check:
    v = versions()
    message = ", ".join(f"{k} {v[k]}" for k in ("livedata", "python", "cryptography", "sqlite"))
    if sqlite3.sqlite_version_info < (3, 24, 0):
        return Check("versions", "warn", message, "SQLite 3.24 or newer is recommended", v)
    return Check("versions", "ok", message, None, v)


# -- keyring and the passphrase fallbacks -----------------------------------------
def _fallback(can_prompt: bool) -> tuple[str | None, str | None, int]:
    """(what will be used, a problem with it, exit code of that problem)."""
    set_vars = [v for v in PASSPHRASE_VARS if os.environ.get(v)]
    if len(set_vars) > 1:
        return None, f"{' and '.join(set_vars)} are all set: set only one", int(ExitCode.USAGE)
    if set_vars:
        var = set_vars[0]
        origin = "from the config file" if settings.exported(var) else "from the environment"
        if var == "LIVEDATA_PASSPHRASE_FILE":
            path = os.path.expanduser(os.environ[var])
            try:
                st = os.stat(path)
            except OSError as e:
                return f"{var} ({path})", f"cannot read {path}: {e.strerror}", int(ExitCode.AUTH)
            if not os.access(path, os.R_OK):
                return f"{var} ({path})", f"cannot read {path}: permission denied", int(ExitCode.AUTH)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                return f"{var} ({path}, {origin})", f"{path} is readable by others: chmod 600 {path}", 0
            return f"{var} ({path}, {origin})", None, 0
        return f"{var} ({origin})", None, 0
    if can_prompt:
        return "a passphrase prompt on this terminal", None, 0
    return None, "no passphrase source: commands that need the vault key will exit 4", int(ExitCode.AUTH)


def check_keyring(*, use_keyring: bool, can_prompt: bool, vault_id: str | None) -> Check:
    from livedata_cli.keys.oskeyring import KEYRING_SERVICE, KeyCache

    fallback, problem, code = _fallback(can_prompt)
    details: dict[str, Any] = {"usable": False, "backend": None, "key_cached": None, "fallback": fallback}
    cache = KeyCache(use_keyring)
    backend = cache.backend()
    reason = cache.reason
    if backend is not None:
        details["backend"] = f"{type(backend).__module__}.{type(backend).__name__}"
        try:
            value = secrets.token_hex(8)
            backend.set_password(KEYRING_SERVICE, PROBE_ACCOUNT, value)
            readable = backend.get_password(KEYRING_SERVICE, PROBE_ACCOUNT) == value
            backend.delete_password(KEYRING_SERVICE, PROBE_ACCOUNT)
            if not readable:
                raise RuntimeError("a value written could not be read back")
            if vault_id:
                details["key_cached"] = backend.get_password(KEYRING_SERVICE, vault_id) is not None
        except Exception as e:  # keyring backends raise many kinds (locked, no D-Bus, denied)
            reason = f"the OS keyring {details['backend']} is not usable ({type(e).__name__}: {e})"
            backend = None
    if backend is not None:
        details["usable"] = True
        cached = {True: "; this vault's key is cached", False: "; no key cached yet"}.get(details["key_cached"], "")
        return Check("keyring", "ok", f"OS keyring usable ({details['backend']}){cached}", None, details)
    details["reason"] = reason
    if problem and code:
        fix = problem if code == int(ExitCode.USAGE) else f"{problem}; {CRON_HINT}"
        return Check("keyring", "fail", f"{reason}; {problem}", fix, details, code)
    message = f"{reason}; the vault key will come from {fallback}"
    hint = problem or (None if "LIVEDATA_PASSPHRASE_" in (fallback or "") else CRON_HINT)
    chosen = not use_keyring or settings.env_flag("LIVEDATA_NO_KEYRING")
    # Turning the keyring off on purpose, with a non-interactive source, is a sound cron set-up.
    if chosen and not problem and fallback and "prompt" not in fallback:
        return Check("keyring", "ok", message, None, details)
    return Check("keyring", "warn", message, hint, details)


# -- store -------------------------------------------------------------------------
def check_store() -> tuple[Check, list[str] | None, str | None]:
    """The store check, the store's journal names (for the index check) and the vault id."""
    from livedata_cli.keys.slots import StoreConfig, list_slots
    from livedata_cli.stores import open_store

    attach = "run 'livedata init' (or 'livedata init --store URL' to attach)"
    if not settings.VaultSettings.exists():  # a fresh machine: nothing is wrong yet
        return Check("store", "warn", f"no vault set up in {settings.home()} yet", attach, {}), None, None
    try:
        saved = settings.VaultSettings.load()
    except LivedataError as e:
        return _fail("store", e, attach), None, None
    try:
        store = open_store(saved.store)
        cfg = StoreConfig.read(store)
        slots = list_slots(store)
        journals = sorted(store.list("journal/"))
    except (LivedataError, OSError) as e:
        return _fail("store", e, f"check that {saved.store} is mounted and reachable", store=saved.store), None, saved.vault_id
    details = {
        "store": store.url,
        "vault_id": cfg.vault_id,
        "format": cfg.format,
        "key_slots": len(slots),
        "journals": len(journals),
    }
    if cfg.vault_id != saved.vault_id:
        return (
            Check(
                "store", "fail",
                f"{store.url} holds vault {cfg.vault_id}, not {saved.vault_id} as this home expects",
                "point this home at the right store with 'livedata init --store URL'",
                details, int(ExitCode.INTEGRITY),
            ),
            None,
            saved.vault_id,
        )
    if not slots:
        return Check("store", "fail", f"{store.url} has no key slots", None, details, int(ExitCode.AUTH)), journals, cfg.vault_id
    message = f"{store.url} reachable: vault {cfg.vault_id}, {len(slots)} key slot(s), {len(journals)} journal(s)"
    return Check("store", "ok", message, None, details), journals, cfg.vault_id


# -- index -------------------------------------------------------------------------
def check_index(store_journals: list[str] | None) -> Check:
    from livedata_cli.index import peek
    from livedata_cli.index.core import MIGRATIONS

    path = settings.home() / settings.INDEX_FILE
    details: dict[str, Any] = {"path": str(path)}
    if not path.exists():
        from livedata_cli.index.at_rest import is_locked

        if is_locked(path):
            return Check("index", "ok", "the local index is encrypted ('livedata lock --index')", None, details)
        return Check("index", "warn", f"no local index at {path} yet", "run 'livedata sync'", details)
    rebuild = "run 'livedata sync --rebuild' (the index is a cache: nothing is lost)"
    try:
        quick, applied, versions, journals = peek.summary(path)
    except sqlite3.Error as e:
        return Check("index", "fail", f"{path} is unusable: {e}", rebuild, details, int(ExitCode.INTEGRITY))
    known = [name for name, _ in MIGRATIONS]
    details.update(
        {
            "quick_check": "ok" if quick == ["ok"] else quick[:5],
            "migrations": applied,
            "pending_migrations": [m for m in known if m not in applied],
            "unknown_migrations": [m for m in applied if m not in known],
            "versions": versions,
            "unsynced_journals": None if store_journals is None else len(set(store_journals) - journals),
        }
    )
    if quick != ["ok"]:
        return Check("index", "fail", f"{path} is damaged: {quick[0]}", rebuild, details, int(ExitCode.INTEGRITY))
    notes = []
    hint = None
    status = "ok"
    if details["unknown_migrations"]:
        status, hint = "warn", "a newer livedata wrote this index; upgrade livedata, or " + rebuild
        notes.append(f"written by a newer livedata ({', '.join(details['unknown_migrations'])})")
    elif details["pending_migrations"]:
        notes.append(f"{len(details['pending_migrations'])} migration(s) to apply on the next command")
    else:
        notes.append(f"migrations current ({applied[-1] if applied else 'none'})")
    if details["unsynced_journals"]:
        status, hint = "warn", hint or "run 'livedata sync'"
        notes.append(f"{details['unsynced_journals']} journal(s) in the store not yet in the index")
    mode = stat.S_IMODE(path.stat().st_mode)
    details["mode"] = f"{mode:o}"
    if mode & 0o077:
        status, hint = "warn", hint or f"chmod 600 {path}: it holds file names in the clear"
        notes.append(f"mode {mode:o} lets others read file names")
    return Check("index", status, f"{path}: quick_check ok, {versions} version(s), " + "; ".join(notes), hint, details)


# -- all of them -------------------------------------------------------------------
def run(*, use_keyring: bool, can_prompt: bool) -> list[Check]:
    """Every check, in the order doctor shows them."""
    checks = [check_config(), check_versions()]
    if checks[0].status == "fail":
        # Without a readable config the home and the key sources are unknown.
        return checks
    store, journals, vault_id = check_store()
    checks.append(check_keyring(use_keyring=use_keyring, can_prompt=can_prompt, vault_id=vault_id))
    checks.append(store)
    checks.append(check_index(journals) if vault_id else Check("index", "warn", "no vault: no index to check", None, {}))
    if vault_id and store.status == "ok":
        checks.append(check_reclaimable())
    return checks


def check_reclaimable() -> Check:
    """Space that ``livedata prune`` would reclaim (livedata_cli/vault/maintenance.py)."""
    from livedata_cli.vault import maintenance

    saved = settings.VaultSettings.load()
    status, message, details = maintenance.doctor_summary(saved.store, settings.home() / settings.INDEX_FILE)
    return Check("reclaimable", status, message, "run 'livedata prune'" if status == "warn" else None, details)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed, else the first failing check's code."""
    return next((c.exit_code or int(ExitCode.UNEXPECTED) for c in checks if c.status == "fail"), 0)
