"""The HTTP client of a Live-Data server: retries, error mapping, timeouts,
the user agent and server URLs.

A request answered 401 refreshes the tokens once (:mod:`livedata_cli.remote.tokens`)
and is sent again.  A refresh token that is expired or revoked is
:class:`LoginRequired` (exit 4): ``livedata login`` again.

Every request is retried with exponential backoff (and jitter) on a dropped
or refused connection, a timeout, 429 and 5xx, honouring ``Retry-After``;
``LIVEDATA_API_RETRIES`` (default 4) retries.  Then answers map to exit
codes: 401/403 → 4, 404 → 3, 413 (quota) and 429 → 7, an unreachable server
or a 5xx → 6.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from livedata_cli import __version__
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
from livedata_cli.remote.tokens import TOKEN_VAR, Tokens, TokenStore, log_in_again, refresh_lock

if TYPE_CHECKING:
    import httpx

API = "/api/v1"
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


def user_agent() -> str:
    """``livedata/<version> (<platform>)``: what the account's device list shows."""
    import platform

    return f"livedata/{__version__} ({platform.system()} {platform.machine()})".replace("  ", " ")


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


DETAIL_LIMIT = 300  # characters of a server's message shown: one line, not a page


def unexpected(server: str, what: str, why: str) -> StoreUnreachable:
    """An answer the Live-Data API never gives (a captive portal's page, ``null``,
    a field of the wrong type): the server is failing, exit 6, as for a 5xx."""
    who = "the server" if server in what else server
    return StoreUnreachable(f"{what}: {who} answered what the Live-Data API never answers ({why})")


def detail(resp: httpx.Response) -> str:
    """The server's one-line message (``{"detail": ...}``), else the status."""
    try:
        body = resp.json()
        d = body.get("detail") if isinstance(body, dict) else None
        if isinstance(d, str):
            return d if len(d) <= DETAIL_LIMIT else d[:DETAIL_LIMIT] + "…"
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
    if 400 <= status < 500:
        return UsageError(f"{what}: {msg}")
    return unexpected(f"{resp.request.url.scheme}://{resp.request.url.netloc.decode()}", what, f"HTTP {status} here")


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
        self.relogin = True  # an ended session may log in again (tokens.set_log_in_again)

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
                    # Every request goes to self.server: over plain http there is no
                    # TLS, and no CA bundle to load (~35 ms a command).
                    verify=not self.server.startswith("http://"),
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
        with self._refreshing, refresh_lock():
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
        again = log_in_again() if self.relogin else None
        if again is None or cur is None or not cur.email or cur.source == "environment":
            raise ended
        if not again(self.server, cur.email):
            raise ended
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

    def answer(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        """The JSON object an answer holds; exit 6 for anything else."""
        try:
            body = resp.json()
        except ValueError:
            raise unexpected(self.server, what, f"HTTP {resp.status_code} without JSON") from None
        if not isinstance(body, dict):
            raise unexpected(self.server, what, f"JSON {type(body).__name__}, not an object")
        return body

    @contextlib.contextmanager
    def shaped(self, what: str) -> Iterator[None]:
        """Reading an answer's fields: one missing or of the wrong type is exit 6."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise unexpected(self.server, what, f"{type(e).__name__}: {e}"[:120]) from None

    def get_json(self, path: str, *, what: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.answer(self.request("GET", path, what=what, params=params), what)


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
