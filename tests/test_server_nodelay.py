"""The server sends each response at once (TCP_NODELAY) on the socket it hands
to uvicorn by its descriptor.

uvicorn wraps such a descriptor as a Unix socket, so asyncio does not set
TCP_NODELAY on the connections it accepts; a response's body written after its
headers then waited for the client's delayed acknowledgement, about 40 ms a
request (an API store's every call).  This serves real TCP connections the way
uvicorn does and reads the option back from the accepted socket.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from livedata_cli.server import run, timeouts

pytestmark = pytest.mark.inprocess


def _accepted_nodelay(protocol_calls_no_delay: bool) -> int:
    listening = run.bind("127.0.0.1", 0)  # what `livedata server` binds and hands over
    wrapped = socket.fromfd(listening.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)  # as uvicorn does
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if protocol_calls_no_delay:
                timeouts._no_delay(transport)  # type: ignore[arg-type]
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=wrapped)
        port = listening.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    try:
        asyncio.run(serve())
    finally:
        wrapped.close()
        listening.close()
    assert seen, "no connection was accepted"
    return seen[0]


def test_a_descriptor_wrapped_as_uvicorn_does_gets_no_nodelay_from_asyncio() -> None:
    assert _accepted_nodelay(False) == 0, "asyncio sets TCP_NODELAY here now: the server's own call may go"


def test_the_server_protocol_sets_nodelay_on_every_connection() -> None:
    assert _accepted_nodelay(True) != 0

