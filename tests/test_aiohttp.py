"""spotgrace.aiohttp: setup() on a real aiohttp server, run_app() in real subprocesses.

In-process tests serve an app wired with :func:`spotgrace.aiohttp.setup` from
an ``AppRunner`` on 127.0.0.1 and end intake with ``grace.request_shutdown()``;
subprocess tests send a real SIGTERM to :func:`spotgrace.aiohttp.run_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

import spotgrace
import spotgrace.aiohttp
from bench.harness import sigterm_under_load
from bench.loadclient import Response, read_response, request_bytes

ROOT = Path(__file__).resolve().parent.parent


async def _work(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
    return web.Response(text="ok")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)  # headers go out before the handler returns
    await response.write(b"streamed")
    await response.write_eof()
    return response


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/work", _work)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/ws", _ws_echo)
    return app


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
async def _serve(app: web.Application, grace: spotgrace.AsyncGrace) -> AsyncIterator[_Server]:
    spotgrace.aiohttp.setup(app, grace, retry_after=9)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv = _Server(site.port)
    try:
        yield srv
    finally:
        await srv.close_clients()
        await runner.cleanup()


@pytest.mark.asyncio
async def test_probes_flip_at_the_notice_and_lame_duck_responses_say_connection_close() -> None:
    async with (
        spotgrace.graceful(signals=(), stop_timeout=60, drain_delay=30) as grace,
        _serve(_app(), grace) as srv,
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
        conn = await srv.connect()
        streamed = await conn.get("/stream")
        assert streamed.body == b"streamed"
        assert streamed.close, "a response the handler prepared itself is marked too"
        assert await conn.closed_by_server()


@pytest.mark.asyncio
async def test_requests_after_intake_closed_get_503_retry_after_and_connection_close() -> None:
    async with spotgrace.graceful(signals=()) as grace, _serve(_app(), grace) as srv:
        conn = await srv.connect()
        assert (await conn.get("/work")).status == 200  # keep-alive connection now open
        grace.request_shutdown("test")
        assert grace.stopping
        late = await conn.get("/work")
        assert late.status == 503
        assert late.headers["retry-after"] == "9"
        assert late.close
        assert await conn.closed_by_server(), "the server closes after the 503, no reset"


@pytest.mark.asyncio
async def test_request_in_flight_when_intake_closes_is_served_and_drained() -> None:
    async with spotgrace.graceful(signals=()) as grace:
        async with _serve(_app(), grace) as srv:
            conn = await srv.connect()
            slow = asyncio.create_task(conn.get("/work?ms=400"))
            for _ in range(200):
                if grace.statistics()["inflight"] == 1:
                    break
                await asyncio.sleep(0.005)
            assert grace.statistics()["inflight"] == 1
            grace.request_shutdown("test")
            response = await slow
            assert (response.status, response.body, response.close) == (200, b"ok", True)
        stats = grace.statistics()
    assert stats["inflight"] == 0
    assert stats["inflight_total"] == 1


@pytest.mark.asyncio
async def test_websocket_is_closed_with_1001_going_away_when_intake_closes() -> None:
    async with spotgrace.graceful(signals=(), stop_timeout=10) as grace:
        async with _serve(_app(), grace) as srv, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{srv.port}/ws")
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "hi"
            grace.request_shutdown("test")
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE
            assert ws.close_code == 1001
            await ws.close()
        assert grace.statistics()["inflight"] == 0


def test_bad_options_are_rejected_when_the_middleware_is_made() -> None:
    grace: spotgrace.AsyncGrace = object()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="healthz"):
        spotgrace.aiohttp.grace_middleware(grace, healthz="healthz")
    with pytest.raises(ValueError, match="retry_after"):
        spotgrace.aiohttp.grace_middleware(grace, retry_after=-1)


# ----------------------------------------------------- run_app(), subprocess


@pytest.mark.slow
@pytest.mark.parametrize("drain_delay", ["0", "0.5"])
def test_run_app_under_load_drops_nothing_on_sigterm_and_exits_0(drain_delay: str) -> None:
    run = asyncio.run(
        sigterm_under_load(
            [str(ROOT / "bench" / "servers.py"), "grace-aiohttp", "{port}"],
            env={"SPOTGRACE_DRAIN_DELAY": drain_delay},
        )
    )
    assert run.exit_code == 0, run.output
    assert run.load.dropped == 0, (run.load.as_dict(), run.load.errors, run.output)
    assert run.load.ok > 40, run.load.as_dict()
    assert run.load.refused == 40, "after the drain the listener is closed"


HUNG_CLEANUP = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web
    import spotgrace, spotgrace.aiohttp

    spotgrace.configure_json_logging(stream=sys.stdout)

    async def on_shutdown(app):
        # One write: print() writes the newline apart, and spotgrace's event
        # writer thread may put a whole event line in between.
        sys.stdout.write("on_shutdown ran\\n")
        sys.stdout.flush()

    async def on_cleanup(app):
        await asyncio.sleep(3600)  # a cleanup that never returns

    app = web.Application()
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    spotgrace.aiohttp.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), stop_timeout=3)
    """
)


@pytest.mark.slow
def test_a_hung_on_cleanup_is_bounded_by_the_budget_and_on_shutdown_still_runs(
    tmp_path: Path,
) -> None:
    script = tmp_path / "hung.py"
    script.write_text(HUNG_CLEANUP)
    run = asyncio.run(sigterm_under_load([str(script), "{port}"], connections=2, sigterm_after=0.5))
    took = run.exited_at - run.sigterm_at
    assert took < 3.0 + 2.0, f"took {took:.2f}s for a 3 s stop_timeout"
    assert "on_shutdown ran" in run.output.splitlines()
    events = [json.loads(line) for line in run.output.splitlines() if line.startswith("{")]
    timed_out = [e for e in events if e.get("event") == "hook.timeout"]
    assert [e["hook"] for e in timed_out] == ["aiohttp.cleanup"], run.output
