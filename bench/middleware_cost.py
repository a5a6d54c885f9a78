"""Per-request cost of the spotgrace middlewares, in process, without a server.

    python bench/middleware_cost.py

Calls each middleware directly many times and prints microseconds per
request for: the bare handler/app, the middleware with a do-nothing grace (its
own work), the middleware with a real ``spotgrace.graceful()`` (adds the
core's ``grace.inflight()`` and the state reads), and the paths ``run_app`` /
``serve`` take before the notice (a flag check and a prefix check of the path:
the server's own bookkeeping is taken over at the notice instead). It isolates what
``bench/zero_drop.py``'s end-to-end overhead numbers cannot, on a noisy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import spotgrace
import spotgrace.aiohttp
from spotgrace._http._shared import HttpOptions
from spotgrace._http._takeover import UvicornBook
from spotgrace.asgi import GraceMiddleware

N = 20000


class NoopGrace:
    """A grace that is always ready and never stopping; inflight does nothing."""

    ready = True
    stopping = False

    def inflight(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


async def per_request(fn: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(1000):  # warm up
        await fn()
    start = time.perf_counter()
    for _ in range(N):
        await fn()
    return (time.perf_counter() - start) / N * 1e6


async def asgi_rows(grace: Any) -> list[tuple[str, float]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "path": "/hello", "headers": []}
    noop = GraceMiddleware(app, grace=NoopGrace())  # type: ignore[arg-type]
    real = GraceMiddleware(app, grace=grace)
    fast = GraceMiddleware(app, grace=grace)
    fast._book = UvicornBook(SimpleNamespace(connections=set(), tasks=set()))  # as serve() does
    return [
        ("ASGI app alone", await per_request(lambda: app(scope, receive, send))),
        ("GraceMiddleware, no-op grace", await per_request(lambda: noop(scope, receive, send))),
        ("GraceMiddleware, real grace", await per_request(lambda: real(scope, receive, send))),
        (
            "GraceMiddleware under serve(), before the notice",
            await per_request(lambda: fast._entry(scope, receive, send)),  # what serve() runs
        ),
    ]


async def aiohttp_rows(grace: Any) -> list[tuple[str, float]]:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        request = make_mocked_request("GET", "/hello")
    noop = spotgrace.aiohttp.grace_middleware(NoopGrace())  # type: ignore[arg-type]
    real = spotgrace.aiohttp.grace_middleware(grace)
    http = HttpOptions()
    fast = spotgrace.aiohttp._fast_handler(grace, http, handler)  # type: ignore[arg-type]
    return [
        ("aiohttp handler alone", await per_request(lambda: handler(request))),
        ("grace_middleware, no-op grace", await per_request(lambda: noop(request, handler))),
        ("grace_middleware, real grace", await per_request(lambda: real(request, handler))),
        ("run_app's request handler, before the notice", await per_request(lambda: fast(request))),
    ]


async def main() -> None:
    async with spotgrace.graceful(signals=()) as grace:
        rows = await asgi_rows(grace) + await aiohttp_rows(grace)
    print("| what | µs per request |\n| --- | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
