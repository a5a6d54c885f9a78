"""A FastAPI app behind GraceMiddleware used alone under uvicorn, for the SIGTERM attacks.

``python bench/review48/alone_app.py PORT MODE HTTP WS``: own ``uvicorn.Server``
inside ``spotgrace.graceful()`` (MODE ``wait``: stop the server after
``grace.wait()``; ``eager``: leave the block at once). Or under the uvicorn CLI:
``uvicorn bench.review48.alone_app:app`` (LifespanGrace). Events the driver
checks are appended to the file named by ``ALONE_LOG``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import BackgroundTasks, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

import spotgrace
from spotgrace.asgi import GraceMiddleware, LifespanGrace

LOG = os.environ.get("ALONE_LOG", os.devnull)
GRACE: Any = None  # the grace the app's own in-flight scopes use (set below)


def log(event: str, **fields: Any) -> None:
    with open(LOG, "a") as f:
        f.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")


def make_api(lifespan: Any = None) -> FastAPI:
    api = FastAPI(lifespan=lifespan)

    @api.get("/work")
    async def work(ms: int = 0) -> PlainTextResponse:
        await asyncio.sleep(ms / 1000)
        return PlainTextResponse("ok")

    @api.get("/scoped")
    async def scoped(ms: int = 500, after: int = 1000) -> PlainTextResponse:
        async with GRACE.inflight():  # the app's own critical section
            await asyncio.sleep(ms / 1000)
        await asyncio.sleep(after / 1000)  # then more work before the response
        log("scoped-done")
        return PlainTextResponse("ok")

    @api.get("/bg")
    async def bg(background: BackgroundTasks, ms: int = 0) -> PlainTextResponse:
        async def later() -> None:
            await asyncio.sleep(ms / 1000)
            log("bg-done", ms=ms)

        background.add_task(later)
        return PlainTextResponse("ok")

    @api.get("/big")
    async def big(mb: int = 1) -> Response:
        return Response(b"x" * (mb << 20), media_type="application/octet-stream")

    async def ticks(kind: str) -> AsyncIterator[bytes]:
        n = 0
        try:
            while True:
                yield b"data: %d\n\n" % n
                n += 1
                await asyncio.sleep(0.05)
        finally:
            log("stream-end", kind=kind, n=n)

    @api.get("/sse")
    async def sse() -> StreamingResponse:
        return StreamingResponse(ticks("sse"), media_type="text/event-stream")

    @api.get("/sse-late")
    async def sse_late(ms: int = 800) -> StreamingResponse:
        await asyncio.sleep(ms / 1000)  # set-up (auth, a query) before the stream starts
        return StreamingResponse(ticks("sse-late"), media_type="text/event-stream")

    @api.get("/raise")
    async def boom() -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("boom")

    @api.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                await socket.send_text(await socket.receive_text())
        except WebSocketDisconnect as exc:
            log("ws-disconnect", code=exc.code)

    return api


# ----------------------------------------------------------- uvicorn CLI (LifespanGrace)

grace_cli = GRACE = LifespanGrace()


@contextlib.asynccontextmanager
async def _lifespan(_: Any) -> AsyncIterator[None]:
    async with grace_cli.serve() as g:
        yield
    log("stats", **g.statistics(), pid=os.getpid())


app = GraceMiddleware(make_api(_lifespan), grace=grace_cli)


# ----------------------------------------------------------- own uvicorn.Server


async def main(port: int, mode: str, http: str, ws: str) -> None:
    import uvicorn

    global GRACE
    async with spotgrace.graceful(
        stop_timeout=float(os.environ.get("STOP", "10")),
        drain_delay=float(os.environ.get("DELAY", "0.5")),
    ) as grace:
        GRACE = grace
        # LEAN=1: a subclass, which keeps the lean path (the behaviour before 48a7e67).
        cls = type("Lean", (GraceMiddleware,), {}) if os.environ.get("LEAN") else GraceMiddleware
        middleware = cls(make_api(), grace=grace)
        config = uvicorn.Config(
            middleware,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            http=http,
            ws=ws,
        )
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve())
        await grace.wait()
        if mode == "eager":
            log("stats-at-leave", **grace.statistics())
            return
        server.should_exit = True
        await task
    log("stats", **grace.statistics(), cls=type(middleware).__name__)


if __name__ == "__main__":
    if sys.argv[2] == "serve":  # spotgrace.asgi.serve(), for comparison
        import spotgrace.asgi

        spotgrace.asgi.serve(
            make_api(),
            port=int(sys.argv[1]),
            log_level="warning",
            uvicorn_options={"http": sys.argv[3], "ws": sys.argv[4], "lifespan": "off"},
            stop_timeout=float(os.environ.get("STOP", "10")),
            drain_delay=float(os.environ.get("DELAY", "0.5")),
        )
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
