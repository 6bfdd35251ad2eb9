"""Read timeouts for slow or stalled clients: uvicorn's HTTP protocol with two more timers.

uvicorn closes idle keep-alive connections, but a client that sends half a
request line or half its headers, or starts a body and stops, holds its
connection (and a request's claim on an upload) for as long as it likes.
Here:

* ``--header-timeout`` (default 10 s): from the connection's first byte, or
  the end of the previous response, to the end of the request's headers;
  past it the connection is closed.
* ``--body-timeout`` (default 30 s): the longest wait for the next piece of a
  body.  Past it the request sees the client as gone (what arrived of an
  upload part is kept, exactly as after a dropped connection) and the
  connection is closed.

A request line and headers are also bounded (:data:`MAX_HEAD`): past it the
request is answered 431 and the connection closed, before the parser, which
holds a header whole until it ends, holds more.

The values come from the server settings in the environment, which
``server/run.py`` sets before uvicorn starts its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from livedata_cli.server.config import ServerConfig


@functools.cache
def _limits() -> tuple[float, float]:
    config = ServerConfig.from_env()
    return float(config.header_timeout), float(config.body_timeout)


def _no_delay(transport: asyncio.Transport) -> None:
    """Send each response at once (``TCP_NODELAY``).  asyncio does this for TCP
    sockets, but uvicorn wraps the socket handed over by its descriptor as a
    Unix one, so asyncio skips it: a response's body written after its headers
    then waited for the client's delayed acknowledgement, 40 ms a request."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # a real Unix socket has no such option
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


MAX_HEAD = 64 * 1024  # a request line and its headers, at most
_TOO_LARGE = json.dumps(
    {"detail": f"the request line and headers pass {MAX_HEAD // 1024} KiB", "code": "headers_too_large"}
).encode()


class TimedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose headers or body stall, or
    whose headers pass :data:`MAX_HEAD` (the parser would hold them all)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_body = 0.0
        self._in_head = True  # the bytes coming are a request line and headers
        self._head_bytes = 0
        self._refused = False

    # -- the size of a request's head ------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            room = MAX_HEAD - self._head_bytes
            if len(data) > room:  # the head must end within the room left
                super().data_received(data[:room])
                if self._in_head:
                    self._refuse_head()
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        super().data_received(data)

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm_header()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\nconnection: close\r\n\r\n" + _TOO_LARGE
            )
            self.transport.close()

    # -- timers ------------------------------------------------------------------------
    def _arm_header(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(_limits()[0], self._expired)

    def _disarm_header(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _arm_body(self) -> None:
        """One timer per body, moved on lazily: a chunk only notes the time it came."""
        self._last_body = self.loop.time()
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(_limits()[1], self._check_body)

    def _check_body(self) -> None:
        self._body_timer = None
        idle = self.loop.time() - self._last_body
        if self.flow is not None and self.flow.read_paused:
            idle = 0.0  # the server is the slow one (its buffer is full): not the client's fault
            self._last_body = self.loop.time()
        if idle < _limits()[1]:
            self._body_timer = self.loop.call_later(_limits()[1] - idle, self._check_body)
            return
        self._expired()

    def _disarm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _expired(self) -> None:
        self._disarm_header()
        self._disarm_body()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's next receive() is http.disconnect
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()

    # -- protocol events -------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        self._arm_header()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header()
        self._disarm_body()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_header()
        super().on_headers_complete()
        if any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers):
            self._arm_body()  # a request without a body (most GETs) needs no body timer

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._last_body = self.loop.time()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0  # what comes next is the next request's head
        self._disarm_body()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # The next request's first byte starts its header timer; until then
            # uvicorn's keep-alive timeout governs the idle connection.
            self._disarm_header()
