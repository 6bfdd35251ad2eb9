"""Accounts on a Live-Data server: register, log in (with MFA), tokens and their refresh.

Nothing here prints or reads the terminal: the CLI passes the email,
password and one-time code in, and renders what comes back.

Tokens
    ``login`` stores the server's access and refresh tokens in the OS
    keyring (service ``livedata-token``, account = the server URL, plus the
    profile when one is chosen).  Where no usable keyring exists (cron, CI,
    containers, ``LIVEDATA_NO_KEYRING=1``) they go to ``tokens.json`` in the
    home instead, created mode 0600.  ``LIVEDATA_TOKEN`` (an access token)
    overrides both, for CI jobs that log in elsewhere.

    The device's name (``login --device-name``, default the host name) and
    its device-trust secret (``livedata account trust``) are kept the same
    way (service ``livedata-device``, else ``device.json``, 0600), apart from
    the tokens: logging out keeps a device trusted.

    A request answered 401 refreshes the tokens once and is sent again.
    Refresh tokens rotate and a reused one ends the whole session, so a
    refresh happens under a lock file in the home, and re-reads the stored
    tokens first: another thread or process may have refreshed already.  A
    refresh token that is expired or revoked is :class:`LoginRequired`
    (exit 4): ``livedata login`` again.

Failures
    Every request is retried with exponential backoff (and jitter) on a
    dropped or refused connection, a timeout, 429 and 5xx, honouring
    ``Retry-After``; ``LIVEDATA_API_RETRIES`` (default 4) retries.  Then
    answers map to exit codes: 401/403 → 4, 404 → 3, 413 (quota) and 429 →
    7, an unreachable server or a 5xx → 6.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from livedata_cli import __version__, settings
from livedata_cli.errors import (
    AuthError,
    LivedataError,
    LoginRequired,
    NotFound,
    QuotaFull,
    Refused,
    StoreUnreachable,
    UsageError,
)

if TYPE_CHECKING:
    import httpx

API = "/api/v1"
TOKEN_SERVICE = "livedata-token"
TOKEN_FILE = "tokens.json"
TOKEN_VAR = "LIVEDATA_TOKEN"
DEVICE_SERVICE = "livedata-device"
DEVICE_FILE = "device.json"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0


# -- server URLs ------------------------------------------------------------------------
def is_server_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def normalize_server(url: str) -> str:
    """``https://host[:port][/path]`` without a trailing slash; plain http only for this machine."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"invalid server URL {url!r}: use https://HOST")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(f"invalid server URL {url!r}: no user, query or fragment")
    if scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise UsageError(f"refusing plain http to {parts.hostname}: use https:// (http is only for 127.0.0.1 and localhost)")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"invalid port in server URL {url!r}") from None
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


# -- tokens -----------------------------------------------------------------------------
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


def user_agent() -> str:
    """``livedata/<version> (<platform>)``: what the account's device list shows."""
    import platform

    return f"livedata/{__version__} ({platform.system()} {platform.machine()})".replace("  ", " ")


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
def _refresh_lock() -> Iterator[None]:
    """One refresh at a time across this home's processes (a reused refresh token ends the session)."""
    import fcntl

    path = settings.ensure_home() / "token.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- logging in again -------------------------------------------------------------------
# ``(server, email)`` → the password and a way to get the TOTP code, or None: set by
# the CLI when it can ask someone at a terminal, so that an ended session logs in again.
Relogin = Callable[[str, str], "tuple[str, Callable[[], str | None]] | None"]
_relogin: Relogin | None = None


def set_relogin(ask: Relogin | None) -> None:
    """How to log in again when a session has ended (None: exit 4, ``livedata login``)."""
    global _relogin
    _relogin = ask


# -- HTTP -------------------------------------------------------------------------------
def retries() -> int:
    text = os.environ.get("LIVEDATA_API_RETRIES", "").strip()
    if not text:
        return 4
    try:
        return max(0, min(int(text), 20))
    except ValueError:
        raise UsageError(f"LIVEDATA_API_RETRIES must be a whole number, got {text!r}") from None


def backoff(attempt: int) -> float:
    """0.25 s, 0.5 s, 1 s ... up to 8 s, with jitter so that clients do not retry in step."""
    base: float = min(8.0, 0.25 * (2**attempt))
    return base * (0.5 + random.random() / 2)


def retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    if value:
        from email.utils import parsedate_to_datetime

        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, min(parsedate_to_datetime(value).timestamp() - time.time(), MAX_RETRY_AFTER))
    return None


def detail(resp: httpx.Response) -> str:
    """The server's one-line message (``{"detail": ...}``), else the status."""
    try:
        body = resp.json()
        d = body.get("detail") if isinstance(body, dict) else None
        if isinstance(d, str):
            return d
        if isinstance(d, list) and d and isinstance(d[0], dict):
            where = ".".join(str(x) for x in d[0].get("loc", [])[1:])
            return f"{where}: {d[0].get('msg', 'invalid')}" if where else str(d[0].get("msg", "invalid"))
    except Exception:
        pass
    return f"HTTP {resp.status_code}"


def error_for(resp: httpx.Response, what: str) -> LivedataError:
    """A server answer as the livedata error of its exit code."""
    status, msg = resp.status_code, detail(resp)
    if status == 401:
        return AuthError(f"{what}: {msg}")
    if status == 403:
        return AuthError(f"{what}: not allowed: {msg}")
    if status == 404:
        return NotFound(f"{what}: not found")
    if status == 413:
        return QuotaFull(f"{what}: quota full: {msg}")
    if status == 429:
        return Refused(f"{what}: rate limited by the server: {msg}")
    if status >= 500:
        return StoreUnreachable(f"{what}: the server failed (HTTP {status}) after retries")
    return UsageError(f"{what}: {msg}")


Body = Callable[[], bytes | Iterable[bytes]]


class Client:
    """One server: an httpx client, the tokens, retries, refresh, and error mapping.

    Thread-safe: uploads run several files at once over one connection pool.
    """

    def __init__(self, server: str, *, tokens: TokenStore | None = None) -> None:
        self.server = normalize_server(server)
        self.tokens = tokens or TokenStore()
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()  # fields only; never held across a request
        self._refreshing = threading.Lock()
        self._current: Tokens | None = None
        self._loaded = False
        self.relogin = True  # an ended session may log in again through set_relogin's callback

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                import httpx

                self._http = httpx.Client(
                    base_url=self.server + API,
                    timeout=_timeout(),
                    headers={"User-Agent": user_agent()},
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                    follow_redirects=False,
                )
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- tokens ---------------------------------------------------------------------
    def current(self) -> Tokens:
        with self._lock:
            if not self._loaded:
                self._current = self.tokens.load(self.server)
                self._loaded = True
            found = self._current
        if found is None:
            raise LoginRequired(f"not logged in to {self.server}: run 'livedata login --server {self.server}'")
        return found

    def logged_in(self) -> Tokens | None:
        try:
            return self.current()
        except LoginRequired:
            return None

    def set_tokens(self, tokens: Tokens) -> str:
        where = self.tokens.save(tokens)
        with self._lock:
            self._current, self._loaded = tokens, True
        return where

    def forget(self) -> bool:
        with self._lock:
            self._current, self._loaded = None, True
        return self.tokens.delete(self.server)

    def refresh(self, used: str) -> None:
        """New tokens for the ones whose access token ``used`` was refused."""
        with self._refreshing, _refresh_lock():
            stored = self.tokens.load(self.server)
            if stored is not None and stored.access_token != used:
                self._set_current(stored)  # another thread or process refreshed already
                return
            with self._lock:
                cur = stored or self._current
            if cur is None or not cur.refresh_token:
                if cur is not None and cur.source == "environment":
                    raise LoginRequired(f"{TOKEN_VAR} was refused by {self.server} (expired or revoked)")
                self._log_in_again(cur, LoginRequired(
                    f"the session with {self.server} has ended: run 'livedata login --server {self.server}' again"
                ))
                return
            resp = self._send("POST", "/auth/refresh-token", json_body={"refresh_token": cur.refresh_token}, once=True)
            if resp.status_code in (400, 401, 403):
                self.tokens.delete(self.server)
                self._set_current(None)
                self._log_in_again(cur, LoginRequired(
                    f"the session with {self.server} has ended ({detail(resp)}): "
                    f"log in again with 'livedata login --server {self.server}'"
                ))
                return
            if resp.status_code != 200:
                raise error_for(resp, "refreshing the login")
            body = resp.json()
            new = Tokens(
                self.server, cur.email, body["access_token"], body["refresh_token"],
                time.time() + float(body.get("expires_in", 900)),
            )
            self.tokens.save(new)
            self._set_current(new)

    def _log_in_again(self, cur: Tokens | None, ended: LoginRequired) -> None:
        """The session has ended: log in again through the relogin callback (a terminal), else ``ended``."""
        ask = _relogin if self.relogin else None
        if ask is None or cur is None or not cur.email or cur.source == "environment":
            raise ended
        answer = ask(self.server, cur.email)
        if answer is None:
            raise ended
        password, code = answer
        login(self.server, cur.email, password, code)
        self._set_current(self.tokens.load(self.server))

    def _set_current(self, tokens: Tokens | None) -> None:
        with self._lock:
            self._current, self._loaded = tokens, True

    # -- requests ---------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        token: str | None = None,
        attempts: int | None = None,
        once: bool = False,
    ) -> httpx.Response:
        """One request, retried on connection failures, 429 and 5xx; the last answer is returned.

        ``once``: the request must not reach the server twice (a refresh token
        presented again ends the session), so only failures before anything
        was sent are retried.
        """
        import httpx

        unsent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

        from livedata_cli import netwait

        last = retries() if attempts is None else attempts
        deadline = netwait.Deadline()
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        for attempt in range(last + 1):
            content = body() if body is not None else None
            try:
                req = self.http.build_request(method, path, params=params, json=json_body, content=content, headers=hdrs)
                resp = self.http.send(req, stream=stream)
            except httpx.TransportError as e:
                wait = backoff(attempt)
                if attempt >= last or (once and not isinstance(e, unsent)) or not deadline.may_retry(wait):
                    raise StoreUnreachable(
                        f"cannot reach {self.server} after {attempt + 1} attempt(s): {_reason(e)}"
                    ) from None
                netwait.announce(f"server {self.server}", attempt + 2, last + 1, wait)
                time.sleep(wait)
                continue
            if resp.status_code in RETRYABLE_STATUS and attempt < last:
                asked = retry_after(resp)
                resp.close()
                wait = backoff(attempt) if asked is None else asked
                if resp.status_code >= 500:
                    netwait.announce(f"server {self.server}", attempt + 2, last + 1, wait)
                time.sleep(wait)
                continue
            return resp
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200, 201, 204, 206),
        auth: bool = True,
        attempts: int | None = None,
    ) -> httpx.Response:
        """A request with the access token; a 401 refreshes the tokens once.
        Answers outside ``ok`` raise the livedata error of their exit code."""
        token = self.current().access_token if auth else None
        resp = self._send(method, path, params=params, json_body=json_body, body=body, headers=headers,
                          stream=stream, token=token, attempts=attempts)
        if resp.status_code == 401 and auth and token is not None:
            resp.close()
            self.refresh(token)
            token = self.current().access_token
            resp = self._send(method, path, params=params, json_body=json_body, body=body, headers=headers,
                              stream=stream, token=token, attempts=attempts)
            if resp.status_code == 401:
                resp.close()
                raise LoginRequired(
                    f"{self.server} refused the login: run 'livedata login --server {self.server}' again"
                )
        if resp.status_code not in ok:
            if stream:
                resp.read()
            resp.close()
            raise error_for(resp, what)
        return resp

    def get_json(self, path: str, *, what: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, what=what, params=params).json()


def _timeout() -> httpx.Timeout:
    """Connect, first byte and every read bounded by the stall timeout (livedata_cli/netwait.py)."""
    import httpx

    from livedata_cli import netwait

    stall = netwait.stall_timeout()
    return httpx.Timeout(stall, connect=min(10.0, stall))


def _reason(e: Exception) -> str:
    name = type(e).__name__
    text = str(e).strip()
    return f"{name}: {text}" if text else name


# -- account operations -----------------------------------------------------------------
@dataclass(frozen=True)
class LoginResult:
    server: str
    email: str
    stored_in: str  # keyring or file
    mfa: bool


def register(server: str, email: str, password: str, first_name: str = "", last_name: str = "") -> dict[str, Any]:
    """Create an account; returns the server's profile of it."""
    c = Client(server)
    try:
        resp = c.request(
            "POST", "/auth/register", what="register", auth=False, ok=(201,),
            json_body={"email": email, "password": password, "first_name": first_name, "last_name": last_name},
        )
        return resp.json()  # type: ignore[no-any-return]
    finally:
        c.close()


def login(
    server: str,
    email: str,
    password: str,
    code: Callable[[], str | None],
    *,
    recovery_code: str | None = None,
    device_name: str | None = None,
) -> LoginResult:
    """Log in and store the tokens.  ``code`` is asked only when the account has MFA on,
    and not on a device the server trusts (``livedata account trust``)."""
    import socket

    c = Client(server)
    try:
        record = c.tokens.load_device(c.server)
        name = device_name or str(record.get("name") or "") or socket.gethostname()
        device: dict[str, Any] = {"device_name": name[:200]}
        if record.get("trust"):
            device["device_trust"] = str(record["trust"])
        resp = c.request("POST", "/auth/login", what="login", auth=False, ok=(200,),
                         json_body={"email": email, "password": password, **device})
        body = resp.json()
        mfa = bool(body.get("mfa_required"))
        if mfa:
            answer: dict[str, Any] = {"mfa_token": body["mfa_token"], **device}
            if recovery_code:
                answer["recovery_code"] = recovery_code
            else:
                totp = code()
                if not totp:
                    raise AuthError(
                        "this account has MFA on: give the 6-digit code (LIVEDATA_TOTP, --code, or a terminal)"
                    )
                answer["code"] = totp
            resp = c.request("POST", "/auth/mfa/challenge", what="MFA code", auth=False, ok=(200,), json_body=answer)
            body = resp.json()
        tokens = Tokens(
            c.server, email.strip().lower(), body["access_token"], body["refresh_token"],
            time.time() + float(body.get("expires_in", 900)),
        )
        where = c.set_tokens(tokens)
        if record.get("name") != name:
            c.tokens.save_device(c.server, {**record, "name": name})
        return LoginResult(c.server, tokens.email, where, mfa)
    finally:
        c.close()


def logout(server: str) -> tuple[bool, bool]:
    """End the session on the server and forget the tokens: (revoked on the server, had tokens)."""
    c = Client(server)
    c.relogin = False  # no password asked just to end a session that has ended
    try:
        had = c.logged_in()
        if had is None:
            return False, False
        revoked = False
        if had.source != "environment":
            try:
                c.request("POST", "/auth/logout", what="logout", ok=(204,))
                revoked = True
            except AuthError:
                revoked = False  # the session had ended already
        c.forget()
        return revoked, True
    finally:
        c.close()


def mfa_setup(server: str, password: str) -> dict[str, str]:
    """Start TOTP setup (the server wants the password again): ``secret`` and ``otpauth_uri``,
    to confirm with :func:`mfa_verify`."""
    return _call(  # type: ignore[no-any-return]
        server, "POST", "/auth/mfa/setup", "MFA setup", json_body={"password": password}
    )


def mfa_verify(server: str, code: str, password: str) -> list[str]:
    """Confirm TOTP setup with a code and the password; returns the single-use recovery codes."""
    body = _call(server, "POST", "/auth/mfa/verify", "MFA code", json_body={"code": code, "password": password})
    return list(body.get("recovery_codes", []))


def mfa_disable(server: str, password: str, code: str) -> None:
    _call(server, "POST", "/auth/mfa/disable", "MFA disable", json_body={"password": password, "code": code})


def account_info(server: str) -> dict[str, Any]:
    """Profile, storage and where the tokens live."""
    c = Client(server)
    try:
        profile = c.get_json("/users/me", what="account")
        storage = c.get_json("/users/me/storage", what="storage")
        return {
            "server": c.server,
            "profile": profile,
            "storage": storage,
            "tokens": c.current().source,
        }
    finally:
        c.close()


def devices(server: str) -> list[dict[str, Any]]:
    """The account's signed-in (or still trusted) devices; ``current`` marks this one."""
    return list(_call(server, "GET", "/users/me/devices", "devices").get("items", []))


def revoke_device(server: str, device_id: str) -> None:
    """Sign a device out: its tokens stop working at once, and its trust ends."""
    _call(server, "DELETE", f"/users/me/devices/{urllib.parse.quote(device_id, safe='')}", f"device {device_id}")


def revoke_other_devices(server: str) -> int:
    """Sign out every device but this one; returns how many."""
    return int(_call(server, "POST", "/users/me/devices/revoke-others", "devices").get("revoked", 0))


def trust_device(server: str) -> dict[str, Any]:
    """Have the server trust this device, and keep its secret with the device record."""
    c = Client(server)
    try:
        body = c.request("POST", "/users/me/devices/current/trust", what="trust").json()
        c.tokens.save_device(c.server, {**c.tokens.load_device(c.server), "trust": body["device_trust"]})
        return {"id": body["id"], "trusted_until": body["trusted_until"]}
    finally:
        c.close()


def audit_logs(
    client: Client, *, since: float | None = None, limit: int | None = None, action: str | None = None
) -> list[dict[str, Any]]:
    """The account's server-side audit records, newest first (back to ``since``)."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        params: dict[str, Any] = {"page": page, "per_page": 200}
        if action:
            params["action"] = action
        body = client.get_json("/users/me/audit-logs", what="server audit log", params=params)
        items = body.get("items", [])
        for item in items:
            if since is not None and float(item.get("created_at", 0)) < since:
                return out
            out.append(item)
            if limit is not None and len(out) >= limit:
                return out
        if len(items) < 200 or page * 200 >= int(body.get("total", 0)):
            return out
        page += 1


def _call(server: str, method: str, path: str, what: str, *, json_body: Any = None) -> Any:
    c = Client(server)
    try:
        resp = c.request(method, path, what=what, json_body=json_body)
        return resp.json() if resp.status_code != 204 and resp.content else {}
    finally:
        c.close()
