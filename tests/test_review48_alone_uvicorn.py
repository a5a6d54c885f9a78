"""review48: attacks on GraceMiddleware used alone under uvicorn (commit 48a7e67), now fixed.

Each test failed on 48a7e67 (a strict xfail until the fix): a uvicorn server
loaded after the class swap saw ASGI 2 (r1), a request inside the app's own
``grace.inflight()`` was not counted (r4), the request running at the notice
under httptools pipelining was not marked close (r3), and a task not started at
the notice was counted twice (r2). Reproducers with their output: bench/review48/.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from spotgrace.asgi import GraceMiddleware
from tests.helpers.asgi_direct import quiet
from tests.test_asgi_alone_uvicorn import _App, _Client, _Holder, _server, _until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.asyncio
async def test_a_uvicorn_server_loaded_after_the_first_request_still_serves() -> None:
    app = _App()
    app.release.set()
    async with quiet(stop_timeout=10) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        async with _server(middleware) as port:
            client = await _Client.open(port)
            assert (await client.get("/a")).status == 200
            client.close()
        # A second server (a restart, an admin port, a per-test fixture) loads the app now.
        async with _server(middleware) as port:
            client = await _Client.open(port)
            status = (await client.get("/a")).status
            client.close()
    assert status == 200  # 500: uvicorn took the middleware for ASGI 2


class _Scoped:
    """``/work`` runs partly inside the app's own ``grace.inflight()``, then goes on."""

    def __init__(self) -> None:
        self.grace: Any = None
        self.inside = asyncio.Event()
        self.done = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/work":
            async with self.grace.inflight():
                self.inside.set()
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.7)
            self.done = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.asyncio
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_a_request_inside_the_apps_own_inflight_scope_is_drained(http: str) -> None:
    app = _Scoped()
    holder = _Holder()
    async with _server(holder, http) as port:
        async with quiet(stop_timeout=10) as grace:
            app.grace = grace
            holder.middleware = GraceMiddleware(app, grace=grace)
            client = await _Client.open(port)
            assert (await client.get("/warm")).status == 200  # finds uvicorn
            client.send("/work")
            await asyncio.wait_for(app.inside.wait(), 10)
            grace.request_shutdown("test")
            # The block leaves at once: only the drain keeps it open.
        done_when_the_block_left = app.done
        assert (await client.response()).status == 200
        client.close()
    assert done_when_the_block_left, "the drain ended while the request was running"


@pytest.mark.asyncio
async def test_httptools_pipelined_the_request_running_at_the_notice_answers_close() -> None:
    app = _App()
    async with (
        quiet(stop_timeout=10, drain_delay=2) as grace,
        _server(GraceMiddleware(app, grace=grace), "httptools") as port,
    ):
        client = await _Client.open(port)
        assert (await client.get("/warm")).status == 200
        client.send("/hold")
        client.send("/next")  # pipelined behind /hold
        await _until(lambda: app.holding == 1, "the request did not reach the app")
        grace.request_shutdown("test")
        await asyncio.sleep(0.3)  # the takeover has run in the loop
        app.release.set()
        first = await client.response()
        client.close()
    assert first.status == 200
    assert first.close, first.headers


@pytest.mark.asyncio
async def test_a_pipelined_request_started_at_the_notice_is_counted_once() -> None:
    import threading

    class _App2:
        grace: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            if scope["path"] == "/a":  # /b's task exists now and has not run
                notice = threading.Thread(target=self.grace.request_shutdown, args=("t",))
                notice.start()
                notice.join()

    app = _App2()
    async with quiet(stop_timeout=10, drain_delay=1) as grace:
        app.grace = grace
        async with _server(GraceMiddleware(app, grace=grace)) as port:
            client = await _Client.open(port)
            assert (await client.get("/warm")).status == 200
            client.send("/a")
            client.send("/b")
            assert [(await client.response()).status for _ in range(2)] == [200, 200]
            client.close()
            await _until(lambda: grace.statistics()["inflight"] == 0, "the count did not return")
            stats = grace.statistics()
    assert stats["inflight_total"] == 2, stats  # /a (at the notice) and /b (after it)
