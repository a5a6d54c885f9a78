"""spotgrace._http: what the aiohttp and ASGI integrations share."""

from __future__ import annotations

import asyncio
import socket
import sys
import types

import pytest

import spotgrace.aiohttp
import spotgrace.asgi
import spotgrace.wsgi
from spotgrace._http._shared import HttpOptions, close_idle_connections, close_listeners


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)
        self.transport.close()


@pytest.mark.asyncio
async def test_close_listeners_still_serves_a_connection_queued_in_the_kernel() -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # A blocking connect from the loop's own thread: the kernel completes the
    # handshake and queues the connection; the loop never got to accept it.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        await close_listeners([server], _Echo)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(client, b"hi")
        reply = await asyncio.wait_for(loop.sock_recv(client, 100), 5)
        assert reply == b"echo:hi", "the queued connection was served, not orphaned"
    finally:
        client.close()
        await server.wait_closed()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_ATTACH_FILTER is Linux's")
@pytest.mark.asyncio
async def test_close_listeners_takes_no_new_connection_once_it_started() -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    closing = asyncio.create_task(close_listeners([server], _Echo))
    await asyncio.sleep(0)  # close_listeners is now past step 1, yielding in step 2
    assert not closing.done()
    # The handshake is not completed: no connection can slip in after the queue
    # was emptied and be reset when the socket closes.
    with pytest.raises(TimeoutError):
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
    await closing
    await server.wait_closed()


@pytest.mark.asyncio
async def test_close_idle_connections_returns_early_when_every_connection_is_gone() -> None:
    open_conns = {"a"}
    asyncio.get_running_loop().call_later(0.05, open_conns.clear)
    closed = []
    gone = await close_idle_connections(
        lambda: open_conns, lambda: closed.append(1), grace=30, remaining=lambda: 60.0
    )
    assert gone is True
    assert closed == []


@pytest.mark.asyncio
async def test_close_idle_connections_closes_what_is_left_after_the_grace() -> None:
    closed = []
    gone = await close_idle_connections(
        lambda: {"idle"}, lambda: closed.append(1), grace=0.05, remaining=lambda: 60.0
    )
    assert gone is False
    assert closed == [1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"readyz": "nope"}, ValueError),
        ({"healthz": "/same", "readyz": "/same"}, ValueError),
        ({"retry_after": 1.5}, TypeError),
        ({"retry_after": -1}, ValueError),
        ({"idle_grace": float("nan")}, ValueError),
        ({"idle_grace": "1"}, TypeError),
    ],
)
def test_bad_http_options_are_rejected(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        HttpOptions(**kwargs)  # type: ignore[arg-type]


def test_empty_probe_path_turns_the_probe_off() -> None:
    options = HttpOptions(readyz="", healthz=None)
    assert (options.readyz, options.healthz) == (None, None)


@pytest.mark.parametrize("module", [spotgrace.aiohttp, spotgrace.asgi, spotgrace.wsgi])
def test_integration_all_is_sorted_complete_and_documented(module: types.ModuleType) -> None:
    assert module.__all__ == sorted(module.__all__)
    defined_here = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined_here == set(module.__all__)
    assert module.__doc__
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"
