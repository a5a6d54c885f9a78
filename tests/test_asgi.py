"""spotgrace.asgi: GraceMiddleware under a real uvicorn, serve() in real subprocesses.

In-process tests run the middleware under a plain ``uvicorn.Server`` on
127.0.0.1 (the middleware must work under any ASGI server) and end intake with
``grace.request_shutdown()``; subprocess tests send a real SIGTERM to
``spotgrace.asgi.serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

import spotgrace
from bench.harness import sigterm_under_load
from bench.loadclient import Response, read_response, request_bytes
from spotgrace.asgi import GraceMiddleware

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers


async def _work(request: Request) -> PlainTextResponse:
    await asyncio.sleep(int(request.query_params.get("ms", "0")) / 1000)
    return PlainTextResponse("ok")


async def _events(request: Request) -> StreamingResponse:
    async def ticks() -> AsyncIterator[str]:
        n = 0
        while True:
            yield f"data: {n}\n\n"
            n += 1
            await asyncio.sleep(0.05)

    return StreamingResponse(ticks(), media_type="text/event-stream")


async def _ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.send_text(await websocket.receive_text())


def _app() -> Starlette:
    return Starlette(
        routes=[Route("/work", _work), Route("/events", _events), WebSocketRoute("/ws", _ws_echo)]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Conn:
    """One raw keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, path: str) -> Response:
        self.writer.write(request_bytes(path))
        return await asyncio.wait_for(read_response(self.reader), 10)

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""


class _Server:
    """A server on 127.0.0.1 and the client connections opened to it (closed at the end)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: list[_Conn] = []

    async def connect(self) -> _Conn:
        conn = _Conn(*await asyncio.open_connection("127.0.0.1", self.port))
        self.conns.append(conn)
        return conn

    async def close_clients(self) -> None:
        for conn in self.conns:
            conn.writer.close()
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


@contextlib.asynccontextmanager
async def _uvicorn(app: Any, *, ws: str = "none") -> AsyncIterator[_Server]:
    """A plain uvicorn server (its own signal handling) serving ``app`` on 127.0.0.1."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws=ws
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    srv = _Server(port)
    try:
        yield srv
    finally:
        await srv.close_clients()
        server.should_exit = True
        await asyncio.wait_for(task, 10)


# ------------------------------------------------------------ middleware


@pytest.mark.asyncio
async def test_probes_flip_at_the_notice_and_lame_duck_responses_say_connection_close() -> None:
    async with (
        spotgrace.graceful(signals=(), stop_timeout=60, drain_delay=30) as grace,
        _uvicorn(GraceMiddleware(_app(), grace=grace)) as srv,
    ):
        conn = await srv.connect()
        ready = await conn.get("/readyz")
        assert (ready.status, ready.close) == (200, False)
        assert (await conn.get("/healthz")).status == 200
        assert (await conn.get("/work")).close is False

        grace.request_shutdown("test")  # lame duck: still serving, not stopping yet
        assert not grace.stopping
        assert (await conn.get("/readyz")).status == 503
        conn = await srv.connect()
        assert (await conn.get("/healthz")).status == 200
        conn = await srv.connect()
        work = await conn.get("/work")
        assert work.status == 200, "requests are still served in the lame-duck period"
        assert work.close, "every response carries Connection: close once the notice came"
        assert await conn.closed_by_server()
    # Leaving the block ends the lame duck: intake stops, the drain runs.


@pytest.mark.asyncio
async def test_requests_after_intake_closed_get_503_retry_after_and_connection_close() -> None:
    async with (
        spotgrace.graceful(signals=()) as grace,
        _uvicorn(GraceMiddleware(_app(), grace=grace, retry_after=7)) as srv,
    ):
        conn = await srv.connect()
        assert (await conn.get("/work")).status == 200  # keep-alive connection now open
        grace.request_shutdown("test")
        assert grace.stopping
        late = await conn.get("/work")
        assert late.status == 503
        assert late.headers["retry-after"] == "7"
        assert late.close
        assert await conn.closed_by_server(), "the server closes after the 503, no reset"


@pytest.mark.asyncio
async def test_request_in_flight_when_intake_closes_is_served_and_drained() -> None:
    entered = asyncio.Event()
    app = _app()

    async def noting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            entered.set()
        await app(scope, receive, send)

    async with spotgrace.graceful(signals=()) as grace:
        async with _uvicorn(GraceMiddleware(noting, grace=grace)) as srv:
            conn = await srv.connect()
            slow = asyncio.create_task(conn.get("/work?ms=400"))
            await asyncio.wait_for(entered.wait(), 5)
            grace.request_shutdown("test")
            # Before the notice the request was not counted (the lean path); from the
            # notice on it is held in flight until it ends.
            for _ in range(200):
                if grace.statistics()["inflight"] == 1 or slow.done():
                    break
                await asyncio.sleep(0.005)
            assert grace.statistics()["inflight"] == 1
            response = await slow
            assert response.status == 200
            assert response.body == b"ok"
            assert response.close
        stats = grace.statistics()
    assert stats["inflight"] == 0
    assert stats["inflight_total"] == 1


@pytest.mark.asyncio
async def test_probe_paths_are_configurable_and_can_be_turned_off() -> None:
    async with spotgrace.graceful(signals=()) as grace:
        app = GraceMiddleware(_app(), grace=grace, readyz="/-/ready", healthz=None)
        async with _uvicorn(app) as srv:
            conn = await srv.connect()
            assert (await conn.get("/-/ready")).status == 200
            assert (await conn.get("/readyz")).status == 404, "the default path is the app's"
            assert (await conn.get("/healthz")).status == 404, "healthz=None: no probe"


def test_bad_probe_path_and_retry_after_are_rejected_at_construction() -> None:
    grace: Any = object()
    with pytest.raises(ValueError, match="readyz"):
        GraceMiddleware(_app(), grace=grace, readyz="readyz")
    with pytest.raises(ValueError, match="differ"):
        GraceMiddleware(_app(), grace=grace, readyz="/z", healthz="/z")
    with pytest.raises(TypeError, match="retry_after"):
        GraceMiddleware(_app(), grace=grace, retry_after=True)


@pytest.mark.asyncio
async def test_event_stream_is_ended_cleanly_when_intake_closes() -> None:
    async with spotgrace.graceful(signals=(), stop_timeout=10) as grace:
        async with _uvicorn(GraceMiddleware(_app(), grace=grace)) as srv:
            conn = await srv.connect()
            conn.writer.write(request_bytes("/events"))
            head = await asyncio.wait_for(conn.reader.readuntil(b"data: 1"), 5)
            assert b"200 OK" in head
            started = time.monotonic()
            grace.request_shutdown("test")
            # The chunked body is terminated properly: the client sees a complete response.
            await asyncio.wait_for(conn.reader.readuntil(b"\r\n0\r\n\r\n"), 5)
        stats = grace.statistics()
    assert time.monotonic() - started < 5, "the stream held up the drain"
    assert stats["inflight"] == 0


@pytest.mark.asyncio
async def test_websocket_is_closed_with_1001_going_away_when_intake_closes() -> None:
    import aiohttp
    import wsproto  # noqa: F401  uvicorn's WebSocket support (a dev dependency): fail, not skip

    async with spotgrace.graceful(signals=(), stop_timeout=10) as grace:
        async with (
            _uvicorn(GraceMiddleware(_app(), grace=grace), ws="wsproto") as srv,
            aiohttp.ClientSession() as session,
        ):
            ws = await session.ws_connect(f"http://127.0.0.1:{srv.port}/ws")
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "hi"
            grace.request_shutdown("test")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1001
            await ws.close()
        assert grace.statistics()["inflight"] == 0


# ------------------------------------------------------- serve(), subprocess


@pytest.mark.slow
@pytest.mark.parametrize("drain_delay", ["0", "0.5"])
def test_serve_under_load_drops_nothing_on_sigterm_and_exits_0(drain_delay: str) -> None:
    run = asyncio.run(
        sigterm_under_load(
            [str(ROOT / "bench" / "servers.py"), "grace-asgi", "{port}"],
            env={"SPOTGRACE_DRAIN_DELAY": drain_delay},
        )
    )
    assert run.exit_code == 0, run.output
    assert run.load.dropped == 0, (run.load.as_dict(), run.load.errors, run.output)
    assert run.load.ok > 40, run.load.as_dict()
    assert run.load.refused == 40, "after the drain the listener is closed"


HUNG_LIFESPAN = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    from starlette.applications import Starlette
    import spotgrace, spotgrace.asgi

    spotgrace.configure_json_logging(stream=sys.stdout)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.sleep(3600)  # a shutdown handler that never returns

    spotgrace.asgi.serve(Starlette(lifespan=lifespan), host="127.0.0.1", port=int(sys.argv[1]),
                         log_level="warning", stop_timeout=3)
    """
)


@pytest.mark.slow
def test_a_hung_lifespan_shutdown_is_bounded_by_the_budget(tmp_path: Path) -> None:
    script = tmp_path / "hung.py"
    script.write_text(HUNG_LIFESPAN)
    run = asyncio.run(sigterm_under_load([str(script), "{port}"], connections=2, sigterm_after=0.5))
    took = run.exited_at - run.sigterm_at
    assert took < 3.0 + 2.0, f"took {took:.2f}s for a 3 s stop_timeout"
    events = [json.loads(line) for line in run.output.splitlines() if line.startswith("{")]
    timed_out = [e for e in events if e.get("event") == "hook.timeout"]
    assert [e["hook"] for e in timed_out] == ["asgi.lifespan"], run.output
