"""In-process attacks on GraceMiddleware alone under uvicorn that held (or not): one line each.

``PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/held_checks.py``
Real uvicorn servers on 127.0.0.1 (httptools unless said), raw HTTP/1.1 clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bench.harness import free_port
from spotgrace.asgi import GraceMiddleware
from tests.helpers.asgi_direct import quiet
from tests.test_asgi_alone_uvicorn import _App, _Client, _Holder, _until

RESULTS: list[tuple[bool, str, Any]] = []


def check(ok: bool, what: str, detail: Any = "") -> None:
    RESULTS.append((ok, what, detail))
    print(
        ("OK   " if ok else "FAIL ") + what + (f"  [{detail}]" if detail != "" else ""), flush=True
    )


@contextlib.asynccontextmanager
async def server(app: Any, **options: Any) -> Any:
    port = free_port()
    options = {"log_level": "critical", "lifespan": "off", **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
    srv = uvicorn.Server(config)
    srv.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110 (a poll)
        await asyncio.sleep(0.01)
    try:
        yield port, srv
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 15)


async def notice_before_the_first_request() -> None:
    app = _App()
    app.release.set()
    async with quiet(stop_timeout=10, drain_delay=1) as grace:
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw) as (port, _):
            grace.request_shutdown("test")
            c = await _Client.open(port)
            r = await c.get("/a")
            c.close()
        check(
            r.status == 200 and r.close and type(mw).__name__ == "GraceMiddleware",
            "notice before the first request: full path, close, no swap",
            (r.status, type(mw)),
        )


async def first_request_running_at_the_notice() -> None:
    app = _App()
    async with quiet(stop_timeout=10, drain_delay=1) as grace:
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw) as (port, _):
            a = await _Client.open(port)
            a.send("/hold")  # the first request: lean, finds uvicorn
            await _until(lambda: app.holding == 1, "first")
            b = await _Client.open(port)
            b.send("/hold")  # direct
            await _until(lambda: app.holding == 2, "second")
            kinds = [type(s.__self__).__name__ for s in app.sends]
            grace.request_shutdown("test")
            n = grace.statistics()["inflight"]
            await asyncio.sleep(0.05)
            app.release.set()
            ra, rb = await a.response(), await b.response()
            a.close()
            b.close()
            await _until(lambda: grace.statistics()["inflight"] == 0, "count")
            st = grace.statistics()
        check(
            n == 2 and ra.close and rb.close and st["inflight_total"] == 2,
            "first (lean) and second (direct) running at the notice: counted once each, close",
            (kinds, n, st["inflight_total"]),
        )


async def client_disconnects_mid_request() -> None:
    app = _App()
    async with quiet(stop_timeout=10, drain_delay=0.2) as grace:
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw) as (port, _):
            w = await _Client.open(port)
            assert (await w.get("/warm")).status == 200
            c = await _Client.open(port)
            c.send("/hold")
            await _until(lambda: app.holding == 1, "hold")
            c.close()
            await asyncio.sleep(0.1)
            grace.request_shutdown("test")
            n = grace.statistics()["inflight"]
            app.release.set()
            await _until(lambda: grace.statistics()["inflight"] == 0, "count")
            w.close()
        check(n == 1, "client gone mid-request: still counted, count back to 0", n)


async def proxy_headers_limit_concurrency() -> None:
    for options in (
        {"proxy_headers": False},
        {"proxy_headers": True},
        {"limit_concurrency": 10},
        {"http": "h11", "proxy_headers": False},
    ):
        app = _App()
        async with quiet(stop_timeout=10, drain_delay=0.2) as grace:
            mw = GraceMiddleware(app, grace=grace)
            async with server(mw, **options) as (port, _):
                w = await _Client.open(port)
                assert (await w.get("/warm")).status == 200
                cs = [await _Client.open(port) for _ in range(2)]
                for c in cs:
                    c.send("/hold")
                await _until(lambda app=app: app.holding == 2, "hold")
                grace.request_shutdown("test")
                n = grace.statistics()["inflight"]
                await asyncio.sleep(0.05)
                app.release.set()
                rs = [await c.response() for c in cs]
                for c in [w, *cs]:
                    c.close()
                await _until(lambda: grace.statistics()["inflight"] == 0, "count")
            check(
                n == 2
                and all(r.close and r.status == 200 for r in rs)
                and type(mw).__name__ == "_OnUvicorn",
                f"{options}: direct path, counted at the notice, close",
                (n, type(mw).__name__),
            )


async def starlette_add_middleware_and_outer_wrapper() -> None:
    async with quiet(stop_timeout=10) as grace:

        async def hello(_: Any) -> PlainTextResponse:
            return PlainTextResponse("ok")

        star = Starlette(
            routes=[Route("/", hello)], middleware=[Middleware(GraceMiddleware, grace=grace)]
        )
        async with server(star) as (port, _):
            c = await _Client.open(port)
            rs = [(await c.get("/")).status for _ in range(3)]
            c.close()
        inner = star.middleware_stack
        while inner is not None and not isinstance(inner, GraceMiddleware):
            inner = getattr(inner, "app", None)
        check(
            rs == [200] * 3 and type(inner).__name__ == "GraceMiddleware",
            "Starlette add_middleware: inside ServerErrorMiddleware (send wrapped): lean, no swap",
            type(inner).__name__,
        )

        class Outer:  # a pure middleware that passes send through
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                await self.app(scope, receive, send)

        app = _App()
        app.release.set()
        mw = GraceMiddleware(app, grace=grace)
        async with server(Outer(mw)) as (port, _):
            c = await _Client.open(port)
            rs = [(await c.get("/x")).status for _ in range(3)]
            c.close()
        check(
            rs == [200] * 3 and type(mw).__name__ == "_OnUvicorn",
            "wrapped by a pure outer middleware passing send: swap, 200s",
            type(mw).__name__,
        )


async def trace_log_level() -> None:
    async with quiet(stop_timeout=10) as grace:
        app = _App()
        app.release.set()
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw, log_level="trace") as (port, _):
            c = await _Client.open(port)
            rs = [(await c.get("/x")).status for _ in range(2)]
            c.close()
        check(
            rs == [200, 200],
            "log_level=trace (MessageLoggerMiddleware wraps send): 200s, no swap",
            type(mw).__name__,
        )


async def drain_timeout_cancels_direct_requests() -> None:
    app = _App()
    holder = _Holder()
    async with server(holder) as (port, _):
        async with quiet(stop_timeout=6, drain_timeout=0.5) as grace:
            holder.middleware = GraceMiddleware(app, grace=grace)
            w = await _Client.open(port)
            assert (await w.get("/warm")).status == 200
            c = await _Client.open(port)
            c.send("/hold")
            await _until(lambda: app.holding == 1, "hold")
            grace.request_shutdown("test")  # the block leaves: its drain times out, cancels
        r = await c.response()
        st = grace.statistics()
        w.close()
        c.close()
    check(
        app.holding == 0 and st["inflight"] == 0 and r.status == 500,
        "drain timeout cancels a direct request (uvicorn answers 500); count back to 0",
        (app.holding, r.status, st["inflight"]),
    )


async def notice_from_thread_while_loop_closed() -> None:
    # The server's loop runs in another thread and is closed before the notice.
    async with quiet(stop_timeout=5) as grace:
        app = _App()
        app.release.set()
        mw = GraceMiddleware(app, grace=grace)
        port = free_port()
        config = uvicorn.Config(
            mw, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
        )
        srv = uvicorn.Server(config)
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        while not srv.started:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        c = await _Client.open(port)
        rs = [(await c.get("/x")).status for _ in range(2)]
        c.close()
        srv.should_exit = True
        await asyncio.to_thread(t.join, 10)
        grace.request_shutdown("test")
        st = grace.statistics()
    check(
        rs == [200, 200] and st["inflight"] == 0,
        "server in a thread whose loop closed before the notice: nothing stuck",
        st,
    )


async def tasks_read_from_another_thread_under_load() -> None:
    app = _App()
    app.release.set()
    errors: list[str] = []
    reads = 0
    async with quiet(stop_timeout=10) as grace:
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw) as (port, srv):
            stop = threading.Event()

            def reader() -> None:
                nonlocal reads
                while not stop.is_set():
                    try:
                        [t for t in list(srv.server_state.tasks) if not t.done()]
                        reads += 1
                    except RuntimeError as exc:
                        errors.append(repr(exc))

            th = threading.Thread(target=reader)
            th.start()

            async def hammer() -> None:
                c = await _Client.open(port)
                for _ in range(200):
                    await c.get("/x")
                c.close()

            await asyncio.gather(*(hammer() for _ in range(20)))
            stop.set()
            th.join()
    check(
        not errors,
        "list(state.tasks) from another thread during 4000 requests",
        f"{reads} reads, {len(errors)} errors",
    )


async def held_does_not_grow() -> None:
    app = _App()
    app.release.set()
    async with quiet(stop_timeout=10, drain_delay=0.3) as grace:
        mw = GraceMiddleware(app, grace=grace)
        async with server(mw) as (port, _):
            c = await _Client.open(port)
            for _ in range(50):
                await c.get("/x")
            book = mw._uvicorn[0] if mw._uvicorn else None  # type: ignore[attr-defined]
            grace.request_shutdown("test")
            await asyncio.sleep(0.1)
            c.close()
        gc.collect()
        check(
            book is not None and len(book.held) <= 1 and not mw._live and not mw._held,
            "book.held / _live / _held stay small",
            (len(book.held) if book else None),
        )


async def loop_closed_while_requests_counted() -> None:
    """The server's loop (another thread) ends while a counted request still runs."""
    async with quiet(stop_timeout=5) as grace:
        app = _App()
        mw = GraceMiddleware(app, grace=grace)
        port = free_port()
        config = uvicorn.Config(
            mw, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
        )
        srv = uvicorn.Server(config)
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        while not srv.started:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        w = await _Client.open(port)
        assert (await w.get("/warm")).status == 200
        c = await _Client.open(port)
        c.send("/hold")
        await _until(lambda: app.holding == 1, "hold")
        grace.request_shutdown("test")
        n = grace.statistics()["inflight"]
        srv.should_exit = srv.force_exit = True  # the server gives up on its requests
        await asyncio.to_thread(t.join, 10)
        await _until(lambda: grace.statistics()["inflight"] == 0, "stuck", 5)
        st = grace.statistics()
        w.close()
        c.close()
    check(
        n == 1 and st["inflight"] == 0,
        "server loop ends with a counted request: count to 0",
        (n, st["inflight"]),
    )


async def main() -> int:
    for attack in (
        notice_before_the_first_request,
        first_request_running_at_the_notice,
        client_disconnects_mid_request,
        proxy_headers_limit_concurrency,
        starlette_add_middleware_and_outer_wrapper,
        trace_log_level,
        drain_timeout_cancels_direct_requests,
        notice_from_thread_while_loop_closed,
        tasks_read_from_another_thread_under_load,
        held_does_not_grow,
        loop_closed_while_requests_counted,
    ):
        try:
            await asyncio.wait_for(attack(), 60)
        except Exception as exc:
            check(False, attack.__name__, repr(exc))
    return 0 if all(ok for ok, _, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
