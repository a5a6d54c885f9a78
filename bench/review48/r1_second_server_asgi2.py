"""Finding 1: a uvicorn server configured after the middleware's first request sees ASGI 2.

After its first lean request under uvicorn, a GraceMiddleware becomes an
``_OnUvicorn`` whose ``__call__`` is a plain function. uvicorn's
``Config.load()`` (interface "auto", the default) decides ASGI 2 vs 3 with
``asyncio.iscoroutinefunction(app.__call__)``: a server whose config is loaded
after that moment (a second server, an admin port started later, a server
restarted in the same process, one uvicorn.Server per test over a module-level
``app = GraceMiddleware(api, grace=LifespanGrace())``) wraps the middleware in
``ASGI2Middleware`` and calls ``middleware(scope)``: every request is a 500
(TypeError: missing 'receive' and 'send').

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/r1_second_server_asgi2.py
Exit status 1 when the bug shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from typing import Any

import uvicorn

import spotgrace
from bench.harness import free_port
from bench.loadclient import read_response, request_bytes
from spotgrace.asgi import GraceMiddleware


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes(path))
    response = await asyncio.wait_for(read_response(reader), 10)
    writer.close()
    return response.status


@contextlib.asynccontextmanager
async def server(middleware: Any) -> Any:
    port = free_port()
    config = uvicorn.Config(
        middleware, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
    )
    srv = uvicorn.Server(config)
    srv.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110 (a poll)
        await asyncio.sleep(0.01)
    try:
        yield port, config
    finally:
        srv.should_exit = True
        await task


async def main() -> int:
    async with spotgrace.graceful(signals=(), exit_code="return", stop_timeout=10) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        print(
            "before: class",
            type(middleware).__name__,
            "iscoroutinefunction(__call__)",
            inspect.iscoroutinefunction(middleware.__call__),
        )
        async with server(middleware) as (port, config):
            statuses = [await get(port, "/a"), await get(port, "/b")]
            print("server 1:", config.interface, statuses)
        print(
            "after:  class",
            type(middleware).__name__,
            "iscoroutinefunction(__call__)",
            inspect.iscoroutinefunction(middleware.__call__),
        )
        async with server(middleware) as (port, config):
            statuses2 = [await get(port, "/a"), await get(port, "/b")]
            print("server 2:", config.interface, statuses2)
    bad = statuses2 != [200, 200]
    print("BUG: the second server treats the middleware as ASGI 2" if bad else "held")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
