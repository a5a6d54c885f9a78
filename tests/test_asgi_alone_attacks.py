"""Attacks on GraceMiddleware used alone (the lean path before the notice): review 13.

Each test here reproduced a defect or pins a claim that held up under attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

import spotgrace
from spotgrace.asgi import GraceMiddleware
from tests.helpers.asgi_direct import Recorder, http_scope, quiet


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _NoticeWhenListed(dict):  # type: ignore[type-arg]
    """``_live`` whose first insertion lets another thread take the notice right there.

    That is what a GIL switch (or a signal handler, a trace function, free
    threading) between ``live[lean] = task`` and the gate's re-check does.
    """

    def __init__(self, grace: Any) -> None:
        super().__init__()
        self.grace = grace
        self.fired = False

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if not self.fired:
            self.fired = True
            notice = threading.Thread(target=self.grace.request_shutdown, args=("window",))
            notice.start()
            notice.join()


@pytest.mark.asyncio
async def test_a_request_listed_just_before_a_notice_from_another_thread_is_not_left_counted() -> (
    None
):
    # The notice lists the request (counts it) and closes the gate; the request then
    # sees the gate closed and takes the full path. Its lean count must still be
    # released, or the drain waits for a request that has ended (until drain_timeout).
    async with quiet(stop_timeout=10, drain_delay=1, drain_timeout=0.5) as grace:
        middleware = GraceMiddleware(_ok, grace=grace)
        middleware._live = _NoticeWhenListed(grace)
        server = Recorder()
        await middleware(http_scope(), server.receive, server.send)
        assert middleware._live.fired
        assert server.start()["status"] == 200
        assert (b"connection", b"close") in list(server.start()["headers"])
        stats = grace.statistics()
        assert stats["inflight"] == 0, stats


@pytest.mark.asyncio
async def test_a_lean_response_started_once_readiness_is_red_says_close() -> None:
    # A notice taken in another thread turns readiness red, then (after arming the
    # watchdog, which lets the GIL go) calls the middleware's listener that closes the
    # gate. A lean request that starts its response in between read ready=False, yet
    # its response went out without Connection: close (seen in real runs: 4 of 800
    # responses, bench/review13/alone_attack.py eager 0 signal). The listener
    # registered first stands for that window: it lets the loop send a response there.
    started = threading.Event()
    sent = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while grace.ready:  # noqa: ASYNC110  (readiness has no event: polled, as a probe does)
            await asyncio.sleep(0.001)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent.set()
        await send({"type": "http.response.body", "body": b"ok"})

    async with quiet(stop_timeout=10, drain_delay=1, drain_timeout=1) as grace:

        def window(tracker: Any) -> None:  # before the middleware's listener
            started.set()
            sent.wait(0.5)  # the GIL goes to the loop: time for the app to respond here

        grace._on_notice(window)
        middleware = GraceMiddleware(app, grace=grace)
        server = Recorder()
        request = asyncio.ensure_future(middleware(http_scope(), server.receive, server.send))
        await asyncio.sleep(0.01)  # in the app, on the lean path
        notice = threading.Thread(target=grace.request_shutdown, args=("window",))
        notice.start()
        await request
        await asyncio.to_thread(notice.join)
        assert sent.is_set()
        start = server.start()
        assert (b"connection", b"close") in list(start["headers"]), start
        assert grace.statistics()["inflight"] == 0


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_websocket_app_receiving_with_a_timeout_loses_no_message() -> None:
    # ``asyncio.wait_for(receive(), t)`` (an idle check, a ping loop; Starlette's
    # ``wait_for(websocket.receive_text(), t)``) cancels the middleware's receive; the
    # server's receive() it had started must not be left behind to swallow the next
    # message (seen: 19 of 20 messages lost, and the disconnect, so the app never ended).
    import aiohttp
    import uvicorn
    import wsproto  # noqa: F401  uvicorn's WebSocket support (a dev dependency): fail, not skip

    from bench.harness import free_port

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            try:
                message = await asyncio.wait_for(receive(), 0.05)
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})

    async with quiet(stop_timeout=10) as grace:
        port = free_port()
        config = uvicorn.Config(
            GraceMiddleware(app, grace=grace),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="wsproto",
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            replies = []
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
                for i in range(6):
                    await ws.send_str(f"m{i}")
                    with contextlib.suppress(TimeoutError):
                        replies.append((await ws.receive(timeout=2)).data)
                    await asyncio.sleep(0.12)  # longer than the app's receive timeout
                await ws.close()
            assert replies == [f"m{i}" for i in range(6)]
            for _ in range(100):  # the app saw the disconnect and ended
                if grace.statistics()["inflight"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert grace.statistics()["inflight"] == 0
        finally:
            server.should_exit = True
            server.force_exit = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, 5)


@pytest.mark.asyncio
async def test_a_lean_response_started_right_after_sigterm_turned_readiness_red_says_close() -> (
    None
):
    # The Python-level signal handler turns readiness red at once, in the loop's own
    # thread, before the notice thread takes the notice (and runs the listeners). A
    # lean request starting its response in between read ready=False: its response
    # must say Connection: close (real SIGTERM runs: 1 of 8 did not,
    # bench/review13/signal_window.py).
    import signal

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # The notice thread must not take the notice before the response starts (it
        # may, raise_signal lets the GIL go): its begin() waits for the coordinator's lock.
        with grace._c._lock:
            signal.raise_signal(signal.SIGTERM)
            assert not grace.ready  # red in the handler itself
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with spotgrace.graceful(exit_code="return", stop_timeout=10, drain_delay=0.2) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        server = Recorder()
        await middleware(http_scope(), server.receive, server.send)
        start = server.start()
        assert (b"connection", b"close") in list(start["headers"]), start
        assert await grace.wait(10)
        assert grace.statistics()["inflight"] == 0


@pytest.mark.asyncio
async def test_a_grace_without_notice_listeners_keeps_the_full_path() -> None:
    # A gunicorn worker's shared state (or any GraceLike without _on_notice) cannot
    # hand the lean requests over at the notice: each request is counted from its start.
    async with quiet(stop_timeout=10) as real:

        class Duck:  # a GraceLike with no _on_notice
            @property
            def ready(self) -> bool:
                return real.ready

            @property
            def stopping(self) -> bool:
                return real.stopping

            def inflight(self) -> Any:
                return real.inflight()

            async def wait(self, timeout: float | None = None) -> bool:
                return await real.wait(timeout)

        middleware = GraceMiddleware(_ok, grace=Duck())  # type: ignore[arg-type]
        assert not middleware._gate.open
        server = Recorder()
        await middleware(http_scope(), server.receive, server.send)
        assert not middleware._live
        assert real.statistics()["inflight_total"] == 1  # counted: the full path
        assert server.start()["status"] == 200


@pytest.mark.asyncio
async def test_a_middleware_made_after_the_notice_takes_the_full_path() -> None:
    # Starlette builds its middleware stack at the first scope it serves: with
    # add_middleware(GraceMiddleware, grace=grace) and no lifespan scope, a notice
    # before the first request makes the middleware afterwards. Its requests must be
    # counted (the drain waits for them) and say Connection: close (real SIGTERM runs:
    # 3 of 3 answered 500, the process ended under them: bench/review13/late_built.py).
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await _ok(scope, receive, send)

    async with quiet(stop_timeout=10, drain_delay=5, drain_timeout=1) as grace:
        grace.request_shutdown("before the first request")
        middleware = GraceMiddleware(app, grace=grace)
        server = Recorder()
        request = asyncio.ensure_future(middleware(http_scope(), server.receive, server.send))
        await asyncio.sleep(0.01)
        assert grace.statistics()["inflight"] == 1, "a request after the notice is counted"
        gate.set()
        await request
        assert (b"connection", b"close") in list(server.start()["headers"])
        assert grace.statistics()["inflight"] == 0
