"""Request bodies are bounded before they are read, and JSON is checked before a route parses it.

Every body is limited (64 KiB unless a route needs more; ``--json-limit``
sets the default) except the few routes that stream file content and count
their own bytes against the quota.  A ``Content-Length`` over the limit is
answered 413 at once, without reading a byte; a body without one is counted
as it arrives and refused as soon as it passes the limit, so a client cannot
make the server hold more than the limit in memory nor spend the event loop
parsing megabytes.  A JSON body deeper than ``MAX_DEPTH``, with ``NaN`` or
``Infinity`` (not JSON), a number too large for a float (``1e999``), or
with a lone surrogate escape (not text) is a 400
before any route sees it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
DEFAULT_LIMIT = 64 * KIB
MAX_DEPTH = 32

API = "/api/v1"
# Routes whose body is file content, streamed into a blob with its own limits (quota, Content-Length).
STREAMED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("POST", re.compile(rf"^{API}/files/?$")),
    ("POST", re.compile(rf"^{API}/files/upload/?$")),
    ("PUT", re.compile(rf"^{API}/files/uploads/[^/]+/?$")),
)
# Routes that may need more than the default: metadata with a description and tags, a share's manifest.
LARGER: tuple[tuple[frozenset[str], re.Pattern[str], int], ...] = (
    (frozenset({"PUT", "PATCH"}), re.compile(rf"^{API}/files/[^/]+/?$"), 256 * KIB),
    (frozenset({"POST"}), re.compile(rf"^{API}/shares/?$"), 256 * KIB),
)


def limit_for(method: str, path: str, default: int) -> int | None:
    """The most bytes a request's body may have; None for the streamed routes."""
    for m, pattern in STREAMED:
        if method == m and pattern.match(path):
            return None
    for methods, pattern, size in LARGER:
        if method in methods and pattern.match(path):
            return max(default, size)
    return default


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def depth(body: bytes) -> int:
    """How deeply a JSON text nests (strings skipped); cheap enough for any body under the limit."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    deepest = level = 0
    for b in brackets:
        level += 1 if b in (0x5B, 0x7B) else -1
        deepest = max(deepest, level)
    return deepest


class _NotJson(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON, but no float holds it
        raise _NotJson(f"the number {text[:40]} is too large")
    return value


def _strings(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def check_json(body: bytes) -> tuple[str, str] | None:
    """Why a JSON body must be refused (code, message), or None when it may go on.

    A body that is not JSON at all is let through: the route's own parser
    answers it with its usual 422.
    """
    if depth(body) > MAX_DEPTH:
        return "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels"
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_finite)
    except _NotJson as e:
        return "invalid_json", str(e)
    except (ValueError, RecursionError):
        return None
    for text in _strings(value):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid_json", "a string holds a lone surrogate (\\ud800-\\udfff): not text"
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = bytes(value).split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True  # FastAPI parses a body without a Content-Type as JSON


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"detail": message, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, default: int = DEFAULT_LIMIT) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("method", ""), scope.get("path", ""), self.default)
        if limit is None:
            await self.app(scope, receive, send)
            return
        too_large = f"request body over {limit} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                text = value.strip()
                # len() first: int() of a 5,000-digit string is itself refused by Python (a 500)
                if not text.isdigit() or len(text) > 18:
                    if text.isdigit():
                        await _refuse(send, 413, "body_too_large", too_large)
                    else:
                        await _refuse(send, 400, "bad_content_length", "Content-Length is not a number")
                    return
                if int(text) > limit:
                    await _refuse(send, 413, "body_too_large", too_large)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, 413, "body_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(scope):
            refused = check_json(body)
            if refused is not None:
                await _refuse(send, 400, *refused)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
