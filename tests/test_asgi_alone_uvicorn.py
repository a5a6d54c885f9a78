"""GraceMiddleware used alone under uvicorn: requests go straight to the app, uvicorn's tasks count.

From the first request on, the middleware under a supported uvicorn hands the
app's own coroutine to uvicorn (no frame, no wrapper, nothing listed). At the
notice uvicorn's own list of request tasks is counted in the drain, in the
thread that takes the notice. These tests run real uvicorn servers (httptools
and h11) on 127.0.0.1 with raw HTTP/1.1 clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import uvicorn

import spotgrace._http._takeover as takeover
from bench.harness import free_port
from bench.loadclient import Response, read_response, request_bytes
from spotgrace.asgi import GraceMiddleware
from tests.helpers.asgi_direct import quiet

pytestmark = pytest.mark.timeout(60)


class _App:
    """An app whose ``/hold`` requests wait for ``release``; it records the sends it got."""

    def __init__(self) -> None:
        self.grace: Any = None
        self.release = asyncio.Event()
        self.holding = 0
        self.sends: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.sends.append(send)
        if scope["path"] == "/hold":
            self.holding += 1
            try:
                await self.release.wait()
            finally:
                self.holding -= 1
        if scope["path"] == "/late-events":  # starts its response once intake has closed
            await self.grace.wait()
            await asyncio.sleep(0.3)
        if scope["path"] in ("/events", "/late-events"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            gone = asyncio.ensure_future(_disconnect(receive))  # the stream was ended
            n = 0
            while not gone.done():
                await send(
                    {"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True}
                )
                n += 1
                await asyncio.sleep(0.05)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@contextlib.asynccontextmanager
async def _server(app: Any, http: str = "auto") -> AsyncIterator[int]:
    """A uvicorn server on 127.0.0.1 (its own signal handling off), serving ``app``; its port."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", http=http
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class _Client:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, path: str) -> None:
        self.writer.write(request_bytes(path))

    async def response(self) -> Response:
        return await asyncio.wait_for(read_response(self.reader), 20)

    async def get(self, path: str) -> Response:
        self.send(path)
        return await self.response()

    def close(self) -> None:
        self.writer.close()


async def _until(check: Any, what: str, limit: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + limit
    while not check():
        assert asyncio.get_running_loop().time() < end, what
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_from_the_second_request_on_the_app_gets_uvicorns_own_send(http: str) -> None:
    app = _App()
    async with quiet(stop_timeout=10) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        async with _server(middleware, http) as port:
            client = await _Client.open(port)
            assert (await client.get("/a")).status == 200
            assert (await client.get("/b")).status == 200
            client.close()
    first, second = app.sends
    # The first request found uvicorn (the lean path's wrapper); the second went straight.
    assert type(first.__self__).__name__ == "LeanExchange"
    assert type(second.__self__).__name__ == "RequestResponseCycle"
    assert type(second.__self__).__module__.startswith("uvicorn.protocols.http.")
    assert isinstance(middleware, GraceMiddleware)


@pytest.mark.asyncio
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_requests_in_flight_at_the_notice_are_counted_at_once_and_answered_with_close(
    http: str,
) -> None:
    app = _App()
    async with quiet(stop_timeout=20, drain_delay=0.2) as grace:
        async with _server(GraceMiddleware(app, grace=grace), http) as port:
            warm = await _Client.open(port)
            assert (await warm.get("/warm")).status == 200
            clients = [warm] + [await _Client.open(port) for _ in range(4)]
            for client in clients:
                client.send("/hold")
            await _until(lambda: app.holding == 5, "the requests did not reach the app")
            assert grace.statistics()["inflight"] == 0  # straight through: not counted
            grace.request_shutdown("test")
            # Counted before request_shutdown returned, in this thread.
            assert grace.statistics()["inflight"] == 5
            await asyncio.sleep(0.05)  # the loop marks them (Connection: close)
            app.release.set()
            responses = [await client.response() for client in clients]
            for client in clients:
                client.close()
            assert [r.status for r in responses] == [200] * 5
            assert [r.body for r in responses] == [b"ok"] * 5
            assert all(r.close for r in responses), [r.headers for r in responses]
            await _until(lambda: grace.statistics()["inflight"] == 0, "the count did not return")
        stats = grace.statistics()
    assert stats["inflight"] == 0, stats
    assert stats["inflight_total"] == 5, stats  # each counted once


@pytest.mark.asyncio
async def test_a_block_that_leaves_at_the_notice_drains_the_requests_uvicorn_runs() -> None:
    # The body leaves as soon as the notice comes: only the drain keeps the block
    # open until the requests that went straight to the app have ended.
    app = _App()
    loop = asyncio.get_running_loop()
    holder = _Holder()
    async with _server(holder) as port:
        async with quiet(stop_timeout=20) as grace:
            holder.middleware = GraceMiddleware(app, grace=grace)
            warm = await _Client.open(port)
            assert (await warm.get("/warm")).status == 200
            clients = [warm, await _Client.open(port)]
            for client in clients:
                client.send("/hold")
            await _until(lambda: app.holding == 2, "the requests did not reach the app")
            loop.call_later(0.5, app.release.set)
            grace.request_shutdown("test")
        assert app.release.is_set(), "the block left before the requests ended"
        responses = [await client.response() for client in clients]
        for client in clients:
            client.close()
    assert [r.status for r in responses] == [200, 200]
    assert grace.statistics()["inflight"] == 0


class _Holder:
    """The ASGI app uvicorn serves: a middleware set later (made inside the block)."""

    def __init__(self) -> None:
        self.middleware: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.middleware(scope, receive, send)


@pytest.mark.asyncio
async def test_a_second_uvicorn_server_takes_the_lean_path_and_is_counted_too() -> None:
    # One middleware under two servers: the first found owns the straight path;
    # the other's requests are listed (the lean path) and counted all the same.
    app = _App()
    async with quiet(stop_timeout=20) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        async with _server(middleware) as one, _server(middleware) as two:
            a = await _Client.open(one)
            assert (await a.get("/warm")).status == 200
            b = await _Client.open(two)
            assert (await b.get("/warm")).status == 200
            a.send("/hold")
            b.send("/hold")
            await _until(lambda: app.holding == 2, "the requests did not reach the app")
            kinds = sorted(type(send.__self__).__name__ for send in app.sends[-2:])
            assert kinds == ["LeanExchange", "RequestResponseCycle"]
            grace.request_shutdown("test")
            assert grace.statistics()["inflight"] == 2
            app.release.set()
            responses = [await a.response(), await b.response()]
            a.close()
            b.close()
            assert [r.status for r in responses] == [200, 200]
            assert all(r.close for r in responses)
            await _until(lambda: grace.statistics()["inflight"] == 0, "the count did not return")
    assert grace.statistics()["inflight_total"] == 2


@pytest.mark.asyncio
async def test_an_event_stream_begun_before_the_notice_ends_when_intake_closes() -> None:
    rest = await _stream_across_the_notice("/events", "httptools")
    assert rest.endswith(b"0\r\n\r\n"), rest[-40:]


@pytest.mark.asyncio
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_an_event_stream_whose_response_starts_after_intake_closed_is_ended(
    http: str,
) -> None:
    # Begun before the notice, its handler still busy when intake closes: the
    # stream it starts later is ended too (review48 r5: it ran until the deadline).
    rest = await _stream_across_the_notice("/late-events", http)
    assert rest.startswith(b"HTTP/1.1 200"), rest[:60]
    assert rest.endswith(b"0\r\n\r\n"), rest[-40:]


async def _stream_across_the_notice(path: str, http: str) -> bytes:
    """An event stream requested (on the straight path) before the notice; what the client
    read after the notice, until the server closed the connection.

    The server outlives the block: when the stream is not ended, the drain's
    timeout cancels it and the test fails well before the block's deadline.
    """
    app = _App()
    holder = _Holder()
    async with _server(holder, http) as port, quiet(stop_timeout=20, drain_delay=0.3) as grace:
        app.grace = grace
        holder.middleware = GraceMiddleware(app, grace=grace)
        warm = await _Client.open(port)
        assert (await warm.get("/warm")).status == 200
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        warm.writer.write(request.encode())
        await _until(lambda: len(app.sends) == 2, "the request did not reach the app")
        assert type(app.sends[-1].__self__).__name__ == "RequestResponseCycle"
        if path == "/events":  # under way
            await asyncio.wait_for(warm.reader.readuntil(b"data: 2"), 5)
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1
        try:  # ended when intake closes: the chunked body's last chunk, then the close
            rest = await asyncio.wait_for(warm.reader.read(), 8)
        except TimeoutError:
            rest = b"(not ended)"
        finally:
            warm.close()
        await _until(lambda: grace.statistics()["inflight"] == 0, "the stream held the drain", 6)
    return rest


@pytest.mark.asyncio
async def test_requests_ending_while_a_notice_comes_from_another_thread_leave_once() -> None:
    # Requests start and end on 20 keep-alive connections while the notice is
    # taken in another thread: no request is lost, none stays counted.
    app = _App()
    app.release.set()
    async with (
        quiet(stop_timeout=20, drain_delay=0.5) as grace,
        _server(GraceMiddleware(app, grace=grace)) as port,
    ):
        clients = [await _Client.open(port) for _ in range(20)]
        assert (await clients[0].get("/warm")).status == 200
        statuses: list[int] = []

        async def loop_on(client: _Client) -> None:
            for _ in range(15):
                response = await client.get("/hold")
                statuses.append(response.status)
                if response.close:
                    return

        running = [asyncio.create_task(loop_on(client)) for client in clients]
        await asyncio.sleep(0.05)
        notice = threading.Thread(target=grace.request_shutdown, args=("race",))
        notice.start()
        await asyncio.gather(*running)
        await asyncio.to_thread(notice.join)
        for client in clients:
            client.close()
        await _until(lambda: grace.statistics()["inflight"] == 0, "a request stayed counted")
    assert statuses
    assert set(statuses) <= {200, 503}, statuses
    assert grace.statistics()["inflight"] == 0


@pytest.mark.asyncio
async def test_a_subclass_keeps_the_lean_path() -> None:
    class Mine(GraceMiddleware):
        pass

    app = _App()
    async with quiet(stop_timeout=10) as grace:
        middleware = Mine(app, grace=grace)
        async with _server(middleware) as port:
            client = await _Client.open(port)
            for path in ("/a", "/b", "/c"):
                assert (await client.get(path)).status == 200
            client.close()
    assert type(middleware) is Mine
    assert {type(send.__self__).__name__ for send in app.sends} == {"LeanExchange"}


@pytest.mark.asyncio
async def test_an_unsupported_uvicorn_version_keeps_the_lean_path_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(takeover, "UVICORN_RANGE", ((0, 1), (0, 2)))
    app = _App()
    with structlog.testing.capture_logs() as logs:
        async with quiet(stop_timeout=10) as grace:
            middleware = GraceMiddleware(app, grace=grace)
            async with _server(middleware) as port:
                client = await _Client.open(port)
                for path in ("/a", "/b"):
                    assert (await client.get(path)).status == 200
                client.close()
    assert type(middleware) is GraceMiddleware
    assert {type(send.__self__).__name__ for send in app.sends} == {"LeanExchange"}
    off = [e for e in logs if e["event"] == "http.takeover_off"]
    assert len(off) == 1, logs
    assert "outside the range" in off[0]["reason"]
