"""Zero cost until the notice: the takeover of in-flight requests at the notice.

``run_app`` / ``serve`` run a request straight through before the notice and
take the requests in flight from aiohttp's / uvicorn's own bookkeeping when it
comes. These tests send a real SIGTERM to real server subprocesses while a
request started before it is still running, and check the framework private
attributes the takeover relies on (they fail loudly on a version that changes
them: widen ``UVICORN_RANGE`` / ``AIOHTTP_RANGE`` and the extras only once
these tests pass on it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from bench.harness import free_port, start_server
from bench.loadclient import read_response, request_bytes
from spotgrace._http import _takeover

ROOT = Path(__file__).resolve().parent.parent
SERVERS = str(ROOT / "bench" / "servers.py")
H11_CYCLES: dict[object, type] = {H11Protocol: RequestResponseCycle}


# ------------------------------------------------------------------ canaries


def test_uvicorn_private_attributes_used_by_the_takeover_are_there() -> None:
    reason = _takeover.uvicorn_unsupported(H11Protocol, H11_CYCLES, ServerState)
    assert reason is None, f"the uvicorn takeover is off on this uvicorn: {reason}"


def test_aiohttp_private_attributes_used_by_the_takeover_are_there() -> None:
    reason = _takeover.aiohttp_unsupported(RequestHandler, web.Server)
    assert reason is None, f"the aiohttp takeover is off on this aiohttp: {reason}"


def test_the_takeover_says_why_it_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.scope: dict[str, object] = {}

    class Handler:
        __slots__ = ("_task_handler",)

    reason = _takeover.uvicorn_unsupported(H11Protocol, {H11Protocol: Cycle}, ServerState)
    assert reason is not None
    assert "keep_alive" in reason
    reason = _takeover.uvicorn_unsupported(object, H11_CYCLES, ServerState)
    assert reason is not None
    assert "H11Protocol" in reason
    reason = _takeover.aiohttp_unsupported(Handler, web.Server)
    assert reason is not None
    assert "_request_in_progress" in reason
    monkeypatch.setattr(_takeover, "_version", lambda dist: (99, 0))
    reason = _takeover.uvicorn_unsupported(H11Protocol, H11_CYCLES, ServerState)
    assert reason is not None
    assert "outside the range" in reason
    reason = _takeover.aiohttp_unsupported(RequestHandler, web.Server)
    assert reason is not None
    assert "outside the range" in reason


@pytest.mark.asyncio
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_a_uvicorn_request_tasks_cycle_is_read_from_its_coroutine(http: str) -> None:
    # The takeover finds a request's cycle from its task (cycle.run_asgi(app)): a
    # uvicorn that names or shapes it differently must fail here, not in the field.
    import uvicorn

    seen: list[object] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(getattr(send, "__self__", None))
        inside.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="off", http=http)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("/x"))
        await asyncio.wait_for(inside.wait(), 10)
        book = _takeover.UvicornBook(server.server_state)
        cycles = book._busy_cycles()
        assert cycles == seen, (cycles, seen)
        assert not cycles[0].response_started
        release.set()
        assert (await asyncio.wait_for(read_response(reader), 10)).status == 200
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


def test_the_declared_extras_match_the_supported_ranges() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for dist, (low, high) in (
        ("uvicorn", _takeover.UVICORN_RANGE),
        ("aiohttp", _takeover.AIOHTTP_RANGE),
    ):
        spec = f'"{dist}>={low[0]}.{low[1]},<{high[0]}.{high[1]}"'
        assert spec in text, f"pyproject's extras must declare {spec}"


# ------------------------------------------------------------ subprocesses


async def _in_flight_at_the_notice(
    argv: list[str], port: int, env: dict[str, str], *, work_ms: int, signal_after: float
) -> tuple[int, float, float, dict[str, str], int, str]:
    """A request starts, SIGTERM arrives while it runs; returns what the client saw."""
    server = await start_server(argv, port, env=env)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in ("/readyz", "/hello"):  # before the notice: a keep-alive connection
            writer.write(request_bytes(path))
            first = await read_response(reader)
            assert first.status == 200
            assert not first.close, path
        writer.write(request_bytes(f"/work?ms={work_ms}"))
        await asyncio.sleep(signal_after)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(read_response(reader), 15)
        tail = await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
        writer.close()
        code = await server.wait(20)
        return (
            response.status,
            response.received - sent,
            server.exited_at - sent,
            response.headers,
            code,
            (await server.output()) + repr(tail),
        )
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.wait(5)


@pytest.mark.parametrize("kind", ["grace-aiohttp", "grace-asgi"])
@pytest.mark.parametrize("drain_delay", ["0", "2"])
def test_a_request_in_flight_at_the_notice_completes_with_connection_close(
    kind: str, drain_delay: str
) -> None:
    """With drain_delay=2 the response goes out in the lame duck, before intake closes."""
    port = free_port()
    status, answered, exited, headers, code, output = asyncio.run(
        _in_flight_at_the_notice(
            [SERVERS, kind, str(port)],
            port,
            {"SPOTGRACE_DRAIN_DELAY": drain_delay},
            work_ms=900,
            signal_after=0.4,
        )
    )
    assert status == 200, output
    assert headers.get("connection", "").lower() == "close", (headers, output)
    assert code == 0, output
    assert exited >= answered, "the drain waited for the request taken over"
    assert "http.takeover_off" not in output


SSE_APP = textwrap.dedent(
    """
    import asyncio, sys
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route
    import spotgrace, spotgrace.asgi
    from spotgrace._http import _takeover

    spotgrace.configure_json_logging(stream=sys.stdout)
    if sys.argv[2] == "off":  # as on a uvicorn the takeover does not support
        _takeover.UVICORN_RANGE = ((0, 0), (0, 1))

    async def events(request):
        async def body():
            n = 0
            while True:
                yield f"data: {n}\\n\\n".encode()
                n += 1
                await asyncio.sleep(0.05)
        return StreamingResponse(body(), media_type="text/event-stream")

    async def work(request):
        await asyncio.sleep(int(request.query_params["ms"]) / 1000)
        from starlette.responses import PlainTextResponse
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/events", events), Route("/work", work)])
    spotgrace.asgi.serve(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                         stop_timeout=10)
    """
)


async def _stream_then_sigterm(script: Path, mode: str) -> tuple[bytes, float, int, str]:
    port = free_port()
    server = await start_server([str(script), str(port), mode], port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        )  # begins before the notice
        await asyncio.sleep(0.4)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(read_response(reader), 8)
        writer.close()
        code = await server.wait(20)
        return response.body, server.exited_at - sent, code, await server.output()
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.wait(5)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_an_event_stream_begun_before_the_notice_is_ended_when_intake_closes(
    tmp_path: Path, mode: str
) -> None:
    """``off``: the takeover is unsupported; the full path (the old way) ends the stream."""
    script = tmp_path / "sse.py"
    script.write_text(SSE_APP)
    body, exited, code, output = asyncio.run(_stream_then_sigterm(script, mode))
    assert body.startswith(b"data: 0\n\n"), body[:100]
    assert code == 0, output
    assert exited < 5.0, f"the stream held the exit for {exited:.1f}s (stop_timeout 10)"
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    off = [e for e in events if e.get("event") == "http.takeover_off"]
    assert bool(off) == (mode == "off"), output
    drained = [e for e in events if e.get("event") == "drain.finished"]
    assert drained, output
