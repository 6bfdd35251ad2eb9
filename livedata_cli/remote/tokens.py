"""The tokens of a Live-Data server login, where they are kept, and the lock
that refreshes them one at a time.

``login`` stores the server's access and refresh tokens in the OS keyring
(service ``livedata-token``, account = the server URL, plus the profile when
one is chosen).  Where no usable keyring exists (cron, CI, containers,
``LIVEDATA_NO_KEYRING=1``) they go to ``tokens.json`` in the home instead,
created mode 0600.  ``LIVEDATA_TOKEN`` (an access token) overrides both, for
CI jobs that log in elsewhere.

The device's name (``login --device-name``, default the host name) and its
device-trust secret (``livedata account trust``) are kept the same way
(service ``livedata-device``, else ``device.json``, 0600), apart from the
tokens: logging out keeps a device trusted.

Refresh tokens rotate and a reused one ends the whole session, so a refresh
(:meth:`livedata_cli.remote.client.Client.refresh`) happens under
:func:`refresh_lock`, and re-reads the stored tokens first: another thread
or process may have refreshed already.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from livedata_cli import settings

TOKEN_SERVICE = "livedata-token"
TOKEN_FILE = "tokens.json"
TOKEN_VAR = "LIVEDATA_TOKEN"
DEVICE_SERVICE = "livedata-device"
DEVICE_FILE = "device.json"


@dataclass
class Tokens:
    """What a login leaves: never printed, never logged."""

    server: str
    email: str
    access_token: str
    refresh_token: str
    expires_at: float
    source: str = "keyring"  # keyring, file or environment

    def to_json(self) -> str:
        data = asdict(self)
        del data["source"]
        return json.dumps(data)

    @staticmethod
    def from_json(text: str, source: str) -> Tokens | None:
        try:
            d = json.loads(text)
            return Tokens(
                server=str(d["server"]),
                email=str(d.get("email", "")),
                access_token=str(d["access_token"]),
                refresh_token=str(d.get("refresh_token", "")),
                expires_at=float(d.get("expires_at", 0)),
                source=source,
            )
        except (ValueError, KeyError, TypeError):
            return None


def _account(server: str) -> str:
    from livedata_cli.settings import active_profile

    profile = active_profile()
    return f"{server} profile={profile}" if profile else server


class TokenStore:
    """The tokens of each server: the OS keyring, else a 0600 file in the home.
    The device record (name, trust secret) beside them, stored apart."""

    def __init__(self) -> None:
        from livedata_cli.keys.oskeyring import KeyCache

        self._cache = KeyCache(True)

    @property
    def keyring_reason(self) -> str:
        return self._cache.reason

    def uses_keyring(self) -> bool:
        return self._cache.backend() is not None

    def path(self, name: str = TOKEN_FILE) -> Any:
        return settings.home() / name

    def load(self, server: str) -> Tokens | None:
        """``LIVEDATA_TOKEN``, else the keyring, else the file."""
        env = os.environ.get(TOKEN_VAR, "").strip()
        if env:
            return Tokens(server, "", env, "", 0.0, source="environment")
        kr = self._cache.backend()
        if kr is not None:
            try:
                text = kr.get_password(TOKEN_SERVICE, _account(server))
            except Exception:
                text = None
            if text:
                return Tokens.from_json(text, "keyring")
        text = self._read_file().get(_account(server))
        return Tokens.from_json(json.dumps(text), "file") if text else None

    def save(self, tokens: Tokens) -> str:
        """Store tokens; returns where (keyring or file)."""
        if tokens.source == "environment":
            return "environment"
        kr = self._cache.backend()
        if kr is not None:
            try:
                kr.set_password(TOKEN_SERVICE, _account(tokens.server), tokens.to_json())
                self._drop_from_file(tokens.server)
                tokens.source = "keyring"
                return "keyring"
            except Exception as e:
                self._cache.reason = f"the OS keyring refused to store the tokens ({type(e).__name__})"
        data = self._read_file()
        data[_account(tokens.server)] = json.loads(tokens.to_json())
        self._write_file(data)
        tokens.source = "file"
        return "file"

    def delete(self, server: str) -> bool:
        removed = self._drop_from_file(server)
        kr = self._cache.backend()
        if kr is not None:
            from keyring.errors import PasswordDeleteError

            try:
                kr.delete_password(TOKEN_SERVICE, _account(server))
                removed = True
            except PasswordDeleteError:  # none there; any other keyring failure is reported
                pass
        return removed

    def load_device(self, server: str) -> dict[str, Any]:
        """This device's record for a server: ``name`` and, once trusted, ``trust``."""
        kr = self._cache.backend()
        if kr is not None:
            try:
                text = kr.get_password(DEVICE_SERVICE, _account(server))
            except Exception:
                text = None
            if text:
                with contextlib.suppress(ValueError):
                    found = json.loads(text)
                    return found if isinstance(found, dict) else {}
        found = self._read_file(DEVICE_FILE).get(_account(server))
        return found if isinstance(found, dict) else {}

    def save_device(self, server: str, record: dict[str, Any]) -> None:
        kr = self._cache.backend()
        if kr is not None:
            try:
                kr.set_password(DEVICE_SERVICE, _account(server), json.dumps(record))
                return
            except Exception as e:
                self._cache.reason = f"the OS keyring refused to store the device record ({type(e).__name__})"
        data = self._read_file(DEVICE_FILE)
        data[_account(server)] = record
        self._write_file(data, DEVICE_FILE)

    def servers(self) -> list[str]:
        """Servers this home holds file tokens for (the keyring cannot be listed)."""
        return sorted({str(v.get("server")) for v in self._read_file().values() if isinstance(v, dict)})

    # -- the fallback file ------------------------------------------------------
    def _read_file(self, name: str = TOKEN_FILE) -> dict[str, Any]:
        try:
            data = json.loads(self.path(name).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_file(self, data: dict[str, Any], name: str = TOKEN_FILE) -> None:
        path = self.path(name)
        settings.ensure_home()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _drop_from_file(self, server: str) -> bool:
        data = self._read_file()
        if _account(server) not in data:
            return False
        del data[_account(server)]
        self._write_file(data)
        return True


@contextlib.contextmanager
def refresh_lock() -> Iterator[None]:
    """One refresh at a time across this home's processes (a reused refresh token ends the session)."""
    from livedata_cli.locking import serialised

    with serialised(settings.ensure_home() / "token.lock"):
        yield


# -- logging in again -------------------------------------------------------------------
# ``(server, email)`` → True once logged in again, False when nobody could be asked: set
# (by ``account.set_relogin``) only when the CLI can ask someone at a terminal.
LogInAgain = Callable[[str, str], bool]
_log_in_again: LogInAgain | None = None


def set_log_in_again(how: LogInAgain | None) -> None:
    """How an ended session logs in again (None: it is exit 4, ``livedata login``)."""
    global _log_in_again
    _log_in_again = how


def log_in_again() -> LogInAgain | None:
    return _log_in_again
