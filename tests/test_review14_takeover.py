"""review14: attacks on uvicorn's bookkeeping taken over (commits 4b206e8, 14ed276).

Each failed on 14ed276 (strict xfails until the fix). In-process,
on uvicorn's own h11 ``RequestResponseCycle.run_asgi`` in real tasks (the transport
is a stand-in). The same findings with a real gunicorn master and a real SIGTERM,
with their output: bench/review14/ (README.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import pytest
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.flow_control import FlowControl

from spotgrace._http._takeover import UvicornBook

pytestmark = pytest.mark.timeout(30)


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _State:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []  # a list: the order _busy_cycles meets them
        self.connections: set[Any] = set()


class _NotReady:
    ready = False
    stopping = False


def _cycle(headers: Any) -> Any:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    transport = _Transport()
    scope = {"type": "http", "method": "GET", "headers": headers}
    log = logging.getLogger("review14")
    return h11_impl.RequestResponseCycle(
        scope,  # type: ignore[arg-type]
        conn,
        transport,  # type: ignore[arg-type]
        FlowControl(transport),  # type: ignore[arg-type]
        log,
        log,
        False,
        [],
        asyncio.Event(),
        lambda: None,
    )


def _run(cycle: Any, app: Callable[..., Awaitable[None]], state: _State) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(cycle.run_asgi(app))
    state.tasks.append(task)
    return task


async def _stream(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while True:
        await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        await asyncio.sleep(0.02)


def test_a_json_response_asked_with_an_accept_listing_event_streams_is_not_cut() -> None:
    async def main() -> bytes:
        state = _State()
        book = UvicornBook(state)
        go_on = asyncio.Event()

        async def json_app(scope: Any, receive: Any, send: Any) -> None:
            headers = [(b"content-type", b"application/json"), (b"content-length", b"8")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"[1, 2", "more_body": True})
            await go_on.wait()
            await send({"type": "http.response.body", "body": b", 3]"[:3]})

        cycle = _cycle([(b"accept", b"application/json, text/event-stream")])
        task = _run(cycle, json_app, state)
        await asyncio.sleep(0.05)  # its response is under way at intake
        await book.end_event_streams()
        go_on.set()
        await task
        return b"".join(cycle.transport.out)

    out = asyncio.run(main())
    assert out.endswith(b"[1, 2, 3"), out[-40:]


def test_a_stalled_event_stream_does_not_keep_the_others_from_ending() -> None:
    async def main() -> bool:
        state = _State()
        book = UvicornBook(state)
        accept = [(b"accept", b"text/event-stream")]
        stalled, reading = _cycle(list(accept)), _cycle(list(accept))
        tasks = [_run(stalled, _stream, state), _run(reading, _stream, state)]
        await asyncio.sleep(0.05)
        stalled.flow.pause_writing()  # its peer reads nothing: the buffers are full
        book.start_ending_event_streams()
        await asyncio.sleep(0.5)
        ended = bool(reading.response_complete)
        for task in [*tasks, *book.held]:
            task.cancel()
        await asyncio.gather(*tasks, *book.held, return_exceptions=True)
        return ended

    assert asyncio.run(main())


def test_mark_close_survives_request_headers_stored_as_a_tuple() -> None:
    async def main() -> Any:
        state = _State()
        book = UvicornBook(state)
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["headers"] = tuple(scope["headers"])
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        cycle = _cycle([(b"accept", b"*/*")])
        task = _run(cycle, app, state)
        await asyncio.sleep(0.05)
        try:
            book.tick(_NotReady())  # type: ignore[arg-type]
        finally:
            release.set()
            await task
        return b"".join(cycle.transport.out)

    out = asyncio.run(main())
    assert b"connection: close" in out.lower(), out[:80]
