"""Settings: where livedata keeps its files, the config file and its profiles,
the per-home vault settings, and the one function that reads a setting.

Precedence, highest first (the README and ``man livedata`` say the same):

1. a command-line flag (``--store``, ``--json``, ``--quiet``, ``--no-keyring``);
2. an environment variable (``LIVEDATA_STORE``, ``LIVEDATA_JSON`` ...);
3. the config file: the chosen profile's table ``[profiles.NAME]``, or the
   top-level keys when no profile is chosen (profiles inherit nothing);
4. the built-in default.

The file is ``$LIVEDATA_HOME/config.toml`` when ``LIVEDATA_HOME`` is set, else
``~/.config/livedata/config.toml``.  A profile is chosen with ``--profile NAME``
or ``LIVEDATA_PROFILE``.  Each profile is its own vault: it keeps its vault
settings and index in its own home, ``home`` if the profile sets it (relative
to the base home), else ``<base home>/profiles/NAME``.

The file is read with :mod:`tomllib`; unknown keys, unknown tables and values
of the wrong type are errors (exit 2) naming the file and line.  ``livedata
config set`` edits it line by line, so comments and order survive.

Other code reads a setting with :func:`setting`; a new setting is one more
entry in :data:`SETTINGS`.

The home (:func:`home`) is ``LIVEDATA_HOME`` when set (tests and CI use it), else the
platform's data directory, or the chosen profile's home.  It holds ``vault.json``
(which store this machine uses), the SQLite index, and the default local store.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from livedata_cli.errors import ConfigError, UsageError, VaultNotFound

CONFIG_FILE = "config.toml"
PROFILE_VAR = "LIVEDATA_PROFILE"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Setting:
    """One key of the config file, with its environment variable and flag."""

    name: str
    kind: type
    env: str | None
    flag: str | None
    help: str
    profile_only: bool = False


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "store", str, "LIVEDATA_STORE", "init --store",
            "The store 'livedata init' uses when --store is not given, in any form --store takes. "
            "Default: the folder 'store' in the home.",
        ),
        Setting(
            "home", str, None, None,
            "Profiles only: where the profile keeps its vault settings and index; relative to the "
            "base home. Default: <base home>/profiles/NAME.",
            profile_only=True,
        ),
        Setting(
            "passphrase_file", str, "LIVEDATA_PASSPHRASE_FILE", None,
            "A file whose first line is the passphrase (keep it mode 0600); relative to the config file.",
        ),
        Setting(
            "passphrase_command", str, "LIVEDATA_PASSPHRASE_COMMAND", None,
            "A shell command printing the passphrase on its first line of output.",
        ),
        Setting(
            "server", str, "LIVEDATA_SERVER", "login --server",
            "The Live-Data server (https://HOST) that register, login, logout, mfa and account talk to.",
        ),
        Setting("email", str, "LIVEDATA_EMAIL", "login --email", "The account's email address on that server."),
        Setting("no_keyring", bool, "LIVEDATA_NO_KEYRING", "--no-keyring", "Never use the OS keyring."),
        Setting("json", bool, "LIVEDATA_JSON", "--json", "Print one JSON document on stdout, as --json."),
        Setting("quiet", bool, "LIVEDATA_QUIET", "--quiet", "Print nothing but errors, as --quiet."),
        Setting(
            "stall_timeout", int, "LIVEDATA_STALL_TIMEOUT", None,
            "Seconds an S3 or server connection may stay silent (connect, first byte, any read) "
            "before the call is retried or the store is unreachable (exit 6). Default: 30.",
        ),
    )
}
_PASSPHRASE_VARS = ("LIVEDATA_PASSPHRASE", "LIVEDATA_PASSPHRASE_FILE", "LIVEDATA_PASSPHRASE_COMMAND")

# -- which profile, which file ---------------------------------------------------
_chosen: str | None = None
_cache: ConfigFile | None = None
_exported: set[str] = set()


def reset() -> None:
    """Forget the chosen profile and the parsed file (a new command in the same process)."""
    global _chosen, _cache
    _chosen, _cache = None, None
    for var in _exported:
        os.environ.pop(var, None)
    _exported.clear()


def use_profile(name: str | None) -> None:
    """Choose a profile (the --profile flag); None leaves LIVEDATA_PROFILE in charge."""
    global _chosen
    if name is not None and not _NAME_RE.match(name):
        raise UsageError(f"invalid profile name {name!r}: use letters, digits, '-' and '_'")
    _chosen = name


def active_profile() -> str | None:
    """The chosen profile: --profile, else LIVEDATA_PROFILE, else none."""
    name = _chosen if _chosen is not None else (os.environ.get(PROFILE_VAR) or None)
    if name is not None and not _NAME_RE.match(name):
        raise UsageError(f"invalid profile name {name!r} in {PROFILE_VAR}")
    return name


def config_path() -> Path:
    """``$LIVEDATA_HOME/config.toml``, else ``~/.config/livedata/config.toml``."""
    env = os.environ.get("LIVEDATA_HOME")
    if env:
        return Path(env).expanduser().absolute() / CONFIG_FILE
    from platformdirs import user_config_path

    return user_config_path("livedata", appauthor=False) / CONFIG_FILE


# -- the parsed file -------------------------------------------------------------
@dataclass
class ConfigFile:
    """The config file as parsed: top-level settings, profiles, and where each key is."""

    path: Path
    exists: bool = False
    top: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)

    def table(self, profile: str | None) -> dict[str, Any]:
        if profile is None:
            return self.top
        if profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"{self.path}: no profile '{profile}' (profiles: {known})")
        return self.profiles[profile]

    def where(self, profile: str | None, key: str) -> str:
        table = "" if profile is None else f"profiles.{profile}"
        line = self.lines.get((table, key))
        return f"{self.path}:{line}" if line else str(self.path)


def current() -> ConfigFile:
    """The config file of this process, parsed once."""
    global _cache
    path = config_path()
    if _cache is None or _cache.path != path:
        _cache = load(path)
    return _cache


def load(path: Path) -> ConfigFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile(path)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from None
    return parse(path, text)


def parse(path: Path, text: str) -> ConfigFile:
    """Parse and validate; every problem names the file and, where known, the line."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column \d+\)$", msg)
        if m:
            raise ConfigError(f"{path}:{m.group(1)}: {msg[: m.start()]}") from None
        raise ConfigError(f"{path}: {msg}") from None
    cfg = ConfigFile(path, exists=True, lines=_key_lines(text))

    def fail(table: str, key: str, message: str) -> ConfigError:
        line = cfg.lines.get((table, key)) or cfg.lines.get((f"{table}.{key}".lstrip("."), ""))
        line = line or cfg.lines.get((table, ""))
        return ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    def check_table(table: str, values: dict[str, Any], profile: str | None) -> dict[str, Any]:
        where = f" in profile '{profile}'" if profile else ""
        for key, value in values.items():
            s = SETTINGS.get(key)
            if s is None:
                known = ", ".join(SETTINGS)
                raise fail(table, key, f"unknown setting '{key}'{where} (known: {known})")
            if s.profile_only and profile is None:
                raise fail(table, key, f"'{key}' is only valid in a profile table [profiles.NAME]")
            if s.kind is bool and not isinstance(value, bool):
                raise fail(table, key, f"'{key}' must be true or false")
            if s.kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise fail(table, key, f"'{key}' must be a whole number above 0")
            if s.kind is str and (not isinstance(value, str) or not value.strip()):
                raise fail(table, key, f"'{key}' must be a non-empty string")
        if "passphrase_file" in values and "passphrase_command" in values:
            raise fail(table, "passphrase_command", f"set only one of passphrase_file and passphrase_command{where}")
        return dict(values)

    for key, value in data.items():
        if key == "profiles":
            if not isinstance(value, dict):
                raise fail("", key, "'profiles' must be tables: [profiles.NAME]")
            for name, table in value.items():
                if not _NAME_RE.match(name) or not isinstance(table, dict):
                    raise fail("profiles", name, f"invalid profile '{name}': use a table [profiles.NAME] with a simple name")
                cfg.profiles[name] = check_table(f"profiles.{name}", table, name)
        else:
            cfg.top.update(check_table("", {key: value}, None))
    return cfg


_HEADER_RE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*(["']?)([A-Za-z0-9_-]+)\1\s*=""")


def _scan(text: str) -> list[tuple[int, str, str]]:
    """(line index, table, key) for every key line and (index, table, "") for every header.

    Good enough for the flat files livedata writes and reads: lines inside
    multi-line strings are skipped.
    """
    out: list[tuple[int, str, str]] = []
    table = ""
    in_multi: str | None = None
    for i, line in enumerate(text.splitlines()):
        if in_multi:
            if line.count(in_multi) % 2 == 1:
                in_multi = None
            continue
        header = _HEADER_RE.match(line)
        if header and not line.lstrip().startswith("[["):
            table = ".".join(p.strip().strip("\"'") for p in header.group(1).split("."))
            out.append((i, table, ""))
            continue
        key = _KEY_RE.match(line)
        if key:
            out.append((i, table, key.group(2)))
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_multi = quote
    return out


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    lines: dict[tuple[str, str], int] = {}
    for i, table, key in _scan(text):
        lines.setdefault((table, key), i + 1)
    return lines


# -- reading a setting -------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """A setting's effective value and where it came from."""

    name: str
    value: Any
    source: str  # "environment", "config" or "default"
    where: str | None  # the variable, or file:line; None for a default

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "where": self.where}


def parse_value(s: Setting, raw: str, origin: str) -> Any:
    """A value given as text (environment, ``config set``), checked for its type."""
    if s.kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UsageError(f"{origin}: '{s.name}' must be true or false, not {raw!r}")
    if not raw.strip():
        raise UsageError(f"{origin}: '{s.name}' must not be empty")
    if s.kind is int:
        if not raw.strip().isdigit() or int(raw) <= 0:
            raise UsageError(f"{origin}: '{s.name}' must be a whole number above 0, not {raw!r}")
        return int(raw)
    return raw


def resolve(name: str) -> Resolved:
    """Environment variable > the config file's chosen table > default."""
    s = SETTINGS[name]
    if s.env and s.env not in _exported:
        raw = os.environ.get(s.env)
        if raw:
            return Resolved(name, parse_value(s, raw, s.env), "environment", s.env)
    cfg = current()
    profile = active_profile()
    table = cfg.table(profile)
    if name in table:
        return Resolved(name, table[name], "config", cfg.where(profile, name))
    return Resolved(name, _default(name, profile), "default", None)


def setting(name: str) -> Any:
    """The effective value of a setting (see the module docstring for the precedence)."""
    return resolve(name).value


def _default(name: str, profile: str | None) -> Any:
    if name == "home":
        return str(profile_home(profile)) if profile else None
    if name == "store":
        return str((profile_home(profile) if profile else base_home()) / "store")
    return False if SETTINGS[name].kind is bool else None


def base_home() -> Path:
    """``LIVEDATA_HOME``, else the platform's data folder; holds the default vault."""
    env = os.environ.get("LIVEDATA_HOME")
    if env:
        return Path(env).expanduser().absolute()
    from platformdirs import user_data_path

    return user_data_path("livedata", appauthor=False)


def profile_home(profile: str) -> Path:
    """Where a profile keeps its vault settings and index."""
    base = base_home()
    value = current().table(profile).get("home")
    if not value:
        return base / "profiles" / profile
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def active_home() -> Path | None:
    """The chosen profile's home, or None when no profile is chosen."""
    profile = active_profile()
    return None if profile is None else profile_home(profile)


def export_to_environment() -> None:
    """Make the chosen profile's key and passphrase settings visible to the key layer.

    ``keys`` reads its sources from the environment (DESIGN §5).  A profile's
    ``no_keyring``, ``passphrase_file`` and ``passphrase_command`` become those
    variables for this process, only where the environment sets none, so an
    environment variable still wins over the file.
    """
    cfg = current()
    profile = active_profile()
    table = cfg.table(profile)
    if table.get("no_keyring") and not os.environ.get("LIVEDATA_NO_KEYRING"):
        _export("LIVEDATA_NO_KEYRING", "1")
    if any(os.environ.get(v) for v in _PASSPHRASE_VARS):
        return
    for key, var in (("passphrase_file", "LIVEDATA_PASSPHRASE_FILE"), ("passphrase_command", "LIVEDATA_PASSPHRASE_COMMAND")):
        if key in table:
            value = table[key]
            if key == "passphrase_file":
                path = Path(value).expanduser()
                value = str(path if path.is_absolute() else cfg.path.parent / path)
            _export(var, value)


def _export(var: str, value: str) -> None:
    os.environ[var] = value
    _exported.add(var)


def exported(var: str) -> bool:
    """True when a variable's value came from the config file, not the environment."""
    return var in _exported


# -- editing the file --------------------------------------------------------------
def set_value(name: str, raw: str, profile: str | None) -> tuple[Path, Any]:
    """Write one setting into the chosen table; comments and order are kept."""
    s = _known(name)
    path = config_path()
    value = parse_value(s, raw, f"livedata config set {name}")
    if s.profile_only and profile is None:
        raise UsageError(f"'{name}' is a profile setting: use 'livedata --profile NAME config set {name} ...'")
    cfg = load(path)
    text = path.read_text(encoding="utf-8") if cfg.exists else ""
    table = "" if profile is None else f"profiles.{profile}"
    new = _edit(text, table, name, f"{name} = {_toml(value)}")
    parsed = parse(path, new)
    if parsed.table(profile).get(name) != value:
        raise ConfigError(f"{path}: cannot edit '{name}' automatically here; edit the file by hand")
    _write(path, new)
    return path, value


def unset_value(name: str, profile: str | None) -> tuple[Path, bool]:
    """Remove one setting from the chosen table; True when it was there."""
    _known(name)
    path = config_path()
    cfg = load(path)
    if not cfg.exists or name not in (cfg.profiles.get(profile, {}) if profile else cfg.top):
        return path, False
    table = "" if profile is None else f"profiles.{profile}"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, t, key in _scan(text):
        if t == table and key == name:
            del lines[i]
            break
    new = "\n".join(lines) + "\n"
    parsed = parse(path, new)
    if name in (parsed.profiles.get(profile, {}) if profile else parsed.top):
        raise ConfigError(f"{path}: cannot remove '{name}' automatically here; edit the file by hand")
    _write(path, new)
    return path, True


def _known(name: str) -> Setting:
    s = SETTINGS.get(name)
    if s is None:
        raise UsageError(f"unknown setting '{name}' (known: {', '.join(SETTINGS)})")
    return s


def _edit(text: str, table: str, key: str, new_line: str) -> str:
    lines = text.splitlines()
    entries = _scan(text)
    headers = [(i, t) for i, t, k in entries if not k]
    if table == "":
        start, end = 0, headers[0][0] if headers else len(lines)
    else:
        found = [i for i, t in headers if t == table]
        if not found:
            while lines and not lines[-1].strip():
                lines.pop()
            lines += ([""] if lines else []) + [f"[{table}]", new_line]
            return "\n".join(lines) + "\n"
        start = found[0] + 1
        end = next((i for i, _ in headers if i > found[0]), len(lines))
    for i, t, k in entries:
        if t == table and k == key and start <= i < end:
            lines[i] = new_line
            return "\n".join(lines) + "\n"
    at = end
    while at > start and not lines[at - 1].strip():
        at -= 1
    lines.insert(at, new_line)
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    out = []
    for ch in str(value):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _write(path: Path, text: str) -> None:
    """Atomically, mode 0600: the file may name passphrase files and commands."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    global _cache
    _cache = None


# The per-home vault settings.

VAULT_FILE = "vault.json"
INDEX_FILE = "index.sqlite"


def home() -> Path:
    """The folder that holds this machine's livedata state: the chosen profile's
    home (see :mod:`livedata_cli.settings`), else the base home."""
    return active_home() or base_home()


def ensure_home() -> Path:
    """Create the home, private to this user: the index in it holds file names."""
    path = home()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def default_store_path() -> Path:
    return home() / "store"


def env_flag(name: str) -> bool:
    """True when an environment variable is set to a true-ish value."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class VaultSettings:
    """What this machine remembers about its vault (no secrets)."""

    store: str
    vault_id: str
    # S3/KMS: the endpoint (AWS_ENDPOINT_URL) and region in force at init, so
    # later commands reach the same service without the variables set.
    endpoint_url: str | None = None
    region: str | None = None

    def save(self) -> None:
        path = ensure_home() / VAULT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def load() -> VaultSettings:
        path = home() / VAULT_FILE
        try:
            data = json.loads(path.read_text())
            return VaultSettings(
                store=str(data["store"]),
                vault_id=str(data["vault_id"]),
                endpoint_url=data.get("endpoint_url") or None,
                region=data.get("region") or None,
            )
        except FileNotFoundError:
            raise VaultNotFound(f"no vault set up in {home()}: run 'livedata init' first") from None
        except (ValueError, KeyError, TypeError):
            raise VaultNotFound(f"{path} is damaged: run 'livedata init --store URL' again") from None

    @staticmethod
    def exists() -> bool:
        return (home() / VAULT_FILE).exists()

    @staticmethod
    def for_store(store: str, vault_id: str) -> VaultSettings:
        """Settings for a vault set up now: with the AWS endpoint and region of
        the environment, when set."""
        return VaultSettings(
            store=store,
            vault_id=vault_id,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        )
