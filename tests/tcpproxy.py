"""A small TCP proxy for tests: forwards 127.0.0.1 connections to a server, and
can cut the connection in flight once a given number of bytes went one way."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class Proxy:
    """``Proxy(port)`` listens on a free port of 127.0.0.1 and forwards to ``port``.

    ``cut_after(n, direction)`` arms one cut: the connection that carries the
    n-th byte in that direction (``"up"``: client to server, ``"down"``:
    server to client, counted from the moment it is armed) is reset at once,
    both sides.  ``cuts`` counts the cuts made.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.cuts = 0
        self.answered = 0
        self.bytes = {"up": 0, "down": 0}  # bytes passed on in each direction
        self._answers: list[tuple[int, int]] = []
        self._armed: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.frozen = False  # accept connections, read requests, never answer (a hung server)
        self.pace = 0.0  # seconds to wait before passing on each chunk to the client (a slow download)
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def answer_next(self, n: int, status: int, retry_after: int = 1) -> None:
        """Answer the next ``n`` requests itself with ``status`` and ``Retry-After`` (then close)."""
        with self._lock:
            self._answers = [(status, retry_after)] * n

    def cut_after(self, n: int, direction: str) -> None:
        assert direction in ("up", "down")
        with self._lock:
            self._armed = (direction, n)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.frozen:
                with self._lock:
                    self._socks.append(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, server]
            pair = _Pair(client, server)
            threading.Thread(target=self._pump, args=(pair, client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, server, client, "down"), daemon=True).start()

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _take(self, direction: str, n: int) -> int | None:
        """How many of these n bytes may pass before a cut (None: all, no cut)."""
        with self._lock:
            if self._armed is None or self._armed[0] != direction:
                return None
            left = self._armed[1]
            if n < left:
                self._armed = (direction, left - n)
                return None
            self._armed = None
            self.cuts += 1
            return left

    def _answer(self, client: socket.socket) -> bool:
        with self._lock:
            if not self._answers:
                return False
            status, wait = self._answers.pop(0)
            self.answered += 1
        body = b'{"detail": "injected by the test proxy", "code": "test"}'
        head = (
            f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nRetry-After: {wait}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        client.sendall(head.encode() + body)
        return True

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if direction == "up" and self._answer(src):
                    pair.finish()
                    return
                allowed = self._take(direction, len(data))
                if allowed is not None:
                    if allowed:
                        dst.sendall(data[:allowed])
                        self.bytes[direction] += allowed
                    pair.reset()
                    return
                if self.frozen:
                    continue  # swallowed: the answer never comes
                if self.pace and direction == "down":
                    time.sleep(self.pace)
                dst.sendall(data)
                self.bytes[direction] += len(data)
        except OSError:
            pass
        finally:
            pair.close_half(dst)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()


class _Pair:
    def __init__(self, a: socket.socket, b: socket.socket) -> None:
        self.a, self.b = a, b

    def reset(self) -> None:
        """Close both ends with RST (SO_LINGER 0): a dropped connection, not a clean end."""
        for s in (self.a, self.b):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RD)  # wakes the other pump's recv, so close() really closes
            with contextlib.suppress(OSError):
                s.close()

    def finish(self) -> None:
        """The proxy answered the client itself: end cleanly so the answer is read."""
        with contextlib.suppress(OSError):
            self.a.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            self.b.close()

    def close_half(self, s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
