"""One ASGI layer for every request: request id, security headers, a JSON log line, metrics.

The log line names method, route, path, status, duration, client IP and
user agent, and never a query string, header value or body: tokens and
passwords travel only in headers and bodies, so none can reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livedata_cli.server import metrics

access_log = logging.getLogger("livedata.server.access")
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
API_PREFIX = "/api/v1"


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            data.update(extra)
        else:
            data["message"] = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            data["error"] = type(record.exc_info[1]).__name__
        return json.dumps(data, default=str)


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        rid = incoming if _RID.match(incoming) else secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        path: str = scope.get("path", "")
        start = time.perf_counter()
        status = 500
        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                if path.startswith("/api/") and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                if scope.get("scheme") == "https":
                    headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as e:
            error = e
            raise
        finally:
            elapsed = time.perf_counter() - start
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None)
            if route is None:  # the OpenAPI document, or nothing matched (bounded: no raw 404 paths)
                route = path if status < 400 else "unmatched"
            elif path.startswith(API_PREFIX + "/") and not route.startswith(API_PREFIX + "/"):
                route = API_PREFIX + route  # routes of included routers keep their own paths
            metrics.observe(scope.get("method", ""), route, status, elapsed)
            client = scope.get("client")
            user_agent = ""
            for name, value in scope.get("headers", []):
                if name == b"user-agent":
                    user_agent = value.decode("latin-1")[:200]
            fields = {
                "event": "request",
                "request_id": rid,
                "method": scope.get("method"),
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "bytes_out": sent,
                "ip": client[0] if client else None,
                "user_agent": user_agent,
                "user_id": state.get("user_id"),
            }
            if error is not None:
                fields["error"] = type(error).__name__
            access_log.info("request", extra={"fields": fields})
