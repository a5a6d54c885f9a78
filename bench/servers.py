"""The four servers the HTTP benchmarks compare, one per ``kind``.

    python bench/servers.py KIND PORT

``plain-aiohttp``  ``aiohttp.web.run_app``, aiohttp's own SIGTERM handling
``plain-uvicorn``  a Starlette app under ``uvicorn.run``
``grace-aiohttp``  the same aiohttp app under ``spotgrace.aiohttp.run_app``
``grace-asgi``     the same Starlette app under ``spotgrace.asgi.serve``
``noop-aiohttp``   plain aiohttp with a do-nothing middleware and ``on_response_prepare``
                   receiver: what aiohttp itself charges for the hooks spotgrace uses

Every app has ``GET /work?ms=N`` (sleeps N ms, answers ``ok``) and ``GET /hello``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

KINDS = ("plain-aiohttp", "plain-uvicorn", "grace-aiohttp", "grace-asgi", "noop-aiohttp")


def aiohttp_app() -> Any:
    """The aiohttp workload app."""
    from aiohttp import web

    async def work(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
        return web.Response(text="ok")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/work", work)
    app.router.add_get("/hello", hello)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app.router.add_get("/readyz", hello)  # a plain server's health check: always 200
    app.router.add_post("/echo", echo)
    return app


def starlette_app() -> Any:
    """The Starlette workload app."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def work(request: Request) -> PlainTextResponse:
        await asyncio.sleep(int(request.query_params.get("ms", "0")) / 1000)
        return PlainTextResponse("ok")

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    # /readyz: a plain server's health check, always 200 (spotgrace's middleware answers it first).
    routes = [Route("/work", work), Route("/hello", hello), Route("/readyz", hello)]
    routes.append(Route("/echo", echo, methods=["POST"]))
    return Starlette(routes=routes)


def main(kind: str, port: int) -> None:
    """Run one server until it is stopped."""
    host = "127.0.0.1"
    if kind == "plain-aiohttp":
        from aiohttp import web

        web.run_app(aiohttp_app(), host=host, port=port, print=None, access_log=None)
    elif kind == "plain-uvicorn":
        import uvicorn

        uvicorn.run(starlette_app(), host=host, port=port, log_level="warning", access_log=False)
    elif kind == "grace-aiohttp":
        import spotgrace.aiohttp

        # web.run_app's own settings (it passes keepalive_timeout=75 to its runner).
        spotgrace.aiohttp.run_app(
            aiohttp_app(),
            host=host,
            port=port,
            runner_options={"access_log": None, "keepalive_timeout": 75.0},
        )
    elif kind == "noop-aiohttp":
        from aiohttp import web

        app = aiohttp_app()

        @web.middleware
        async def noop(request: web.Request, handler: Any) -> Any:
            return await handler(request)

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            pass

        app.middlewares.append(noop)
        app.on_response_prepare.append(on_prepare)
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    elif kind == "grace-asgi":
        import spotgrace.asgi

        spotgrace.asgi.serve(
            starlette_app(),
            host=host,
            port=port,
            log_level="warning",
            uvicorn_options={"access_log": False},
        )
    else:
        raise SystemExit(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
