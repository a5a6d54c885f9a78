"""``spotgrace.aiohttp.run_app`` without an ``on_response_prepare`` receiver.

Before the notice ``run_app`` runs a request with no frame of spotgrace's: its
request handler returns the app's coroutine, and instead of a signal receiver
its requests are a ``web.Request`` subclass whose ``_prepare_hook`` marks
``Connection: close`` from the notice and remembers WebSockets. These tests
send a real SIGTERM to a real server subprocess and check what the hook is for:
a response *streamed* after the notice by a request that began before it says
``Connection: close``; a WebSocket opened before the notice is closed with 1001
when intake closes; an app's own ``on_response_prepare`` receivers still run.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.web_protocol import RequestHandler

from bench.harness import free_port, start_server
from bench.loadclient import read_response, request_bytes
from spotgrace._http import _takeover

APP = textwrap.dedent(
    """
    import asyncio, sys
    from aiohttp import web
    import spotgrace.aiohttp

    async def stream(request):
        await asyncio.sleep(int(request.query["ms"]) / 1000)
        response = web.StreamResponse()
        await response.prepare(request)  # prepared by the handler itself, after the notice
        await response.write(b"streamed")
        await response.write_eof()
        return response

    async def ws(request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(message.data)
        return socket

    async def on_prepare(request, response):
        response.headers["X-App-Hook"] = "ran"

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws)
    app.on_response_prepare.append(on_prepare)
    spotgrace.aiohttp.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), stop_timeout=10)
    """
)


def _script(tmp_path: Path) -> str:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return str(path)


def test_the_request_hook_canary_sees_what_run_app_relies_on() -> None:
    assert (
        _takeover.aiohttp_unsupported(RequestHandler, web.Server, web.Application, web.Request)
        is None
    )

    class NoCls:
        def _make_request(self, message: object) -> None: ...

    class SyncHook:
        def _prepare_hook(self, response: object) -> None: ...

    reason = _takeover.aiohttp_unsupported(RequestHandler, web.Server, NoCls, web.Request)
    assert reason is not None
    assert "_cls" in reason
    reason = _takeover.aiohttp_unsupported(RequestHandler, web.Server, web.Application, SyncHook)
    assert reason is not None
    assert "_prepare_hook" in reason


async def _streamed_after_the_notice(script: str) -> tuple[int, dict[str, str], bytes, int, str]:
    port = free_port()
    server = await start_server([script, str(port)], port)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("/stream?ms=0"))  # before the notice: keep-alive
        first = await read_response(reader)
        assert first.status == 200, first.headers
        assert not first.close, first.headers
        assert first.headers.get("x-app-hook") == "ran", first.headers
        writer.write(request_bytes("/stream?ms=800"))
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(read_response(reader), 15)
        writer.close()
        code = await server.wait(20)
        return response.status, response.headers, response.body, code, await server.output()
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.wait(5)


def test_a_response_streamed_after_the_notice_by_a_request_from_before_says_close(
    tmp_path: Path,
) -> None:
    status, headers, body, code, output = asyncio.run(_streamed_after_the_notice(_script(tmp_path)))
    assert (status, body) == (200, b"streamed"), output
    assert headers.get("connection", "").lower() == "close", (headers, output)
    assert headers.get("x-app-hook") == "ran", headers  # the app's receiver still runs
    assert code == 0, output
    assert "http.takeover_off" not in output


async def _websocket_then_sigterm(script: str) -> tuple[WSMsgType, int | None, int, str]:
    port = free_port()
    server = await start_server([script, str(port)], port)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "hi"
            server.proc.send_signal(signal.SIGTERM)
            message = await ws.receive(timeout=8)
            close_code = ws.close_code
            await ws.close()
        code = await server.wait(20)
        return message.type, close_code, code, await server.output()
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.wait(5)


def test_a_websocket_opened_before_the_notice_is_closed_with_1001(tmp_path: Path) -> None:
    kind, close_code, code, output = asyncio.run(_websocket_then_sigterm(_script(tmp_path)))
    assert kind is WSMsgType.CLOSE, output
    assert close_code == 1001, output
    assert code == 0, output


TARGETS = (
    "/hello",
    "/readyz",
    "/healthz",
    "/ready%7A",
    "/%72eadyz?a=%20",
    "/readyz?x=1",
    "/readyz/",
    "/ready",
    "/readyzz",
    "/a%2Freadyz",
    "/%2Freadyz",
    "/100%25",
    "/h%C3%A9llo",
)


def test_the_fast_handlers_send_every_probe_down_the_full_path() -> None:
    """``path_safe`` (and the raw-target fallback for an old yarl) never let a probe through."""
    from aiohttp.test_utils import make_mocked_request

    import spotgrace.aiohttp as sa
    from spotgrace._http._shared import HttpOptions

    class Ready:
        ready = True

    fast = object()
    options = HttpOptions()

    def inner(request: web.BaseRequest) -> object:
        return fast

    handlers = [
        sa._fast_handler(Ready(), options, inner),  # type: ignore[arg-type]
        sa._raw_path_handler(Ready(), options, inner, inner),  # type: ignore[arg-type]
    ]
    for target in TARGETS:
        request = make_mocked_request("GET", target)
        probe = request.path in ("/readyz", "/healthz")
        for handle in handlers:
            result = handle(request)
            if result is not fast:
                result.close()  # type: ignore[attr-defined]  # the full path's coroutine
            assert probe <= (result is not fast), (target, handle)
        # the path_safe handler takes the full path only for a probe or a %2F / %25
        result = handlers[0](request)
        if result is not fast:
            result.close()  # type: ignore[attr-defined]
        assert (result is not fast) == (probe or "%" in request.rel_url.path_safe), target


def test_the_request_factory_is_make_request_with_the_class_for_its_default() -> None:
    """No functools.partial per request on the supported aiohttp; the fallback still works."""
    import functools
    import types

    import spotgrace.aiohttp as sa

    class Marked(web.Request):
        pass

    app = web.Application()
    factory = sa._request_factory(app, Marked)
    assert isinstance(factory, types.MethodType), "aiohttp's _make_request changed: see canary"
    assert factory.__self__ is app
    assert factory.__func__.__defaults__ == (Marked,)
    assert web.Application._make_request.__defaults__ == (web.Request,)  # left alone

    class Other:  # an app whose _make_request is not aiohttp's: the partial
        def _make_request(self, *args: object, _cls: type = web.Request) -> object:
            return (_cls, args)

    fallback = sa._request_factory(Other(), Marked)  # type: ignore[arg-type]
    assert isinstance(fallback, functools.partial)
    assert fallback(1, 2) == (Marked, (1, 2))


def test_readiness_reads_the_coordinator_of_a_spotgrace_grace() -> None:
    import spotgrace
    from spotgrace._http._shared import readiness

    with spotgrace.graceful(signals=(), exit_code="return") as grace:
        state = readiness(grace)  # type: ignore[arg-type]
        assert state is not grace
        assert state.ready is True
        grace.request_shutdown("test")
        assert state.ready is False
        assert grace.ready is False

    class Fake:
        ready = True

    fake = Fake()
    assert readiness(fake) is fake  # type: ignore[arg-type]
