"""One app with LifespanGrace + GraceMiddleware served by two uvicorn.Servers in turn
(two lifespans in one process). The first ends without a signal (its block's own
notice closes the middleware's gate for good); in the second, a request begun before
SIGTERM must be counted, answered whole with Connection: close, and drained.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import uvicorn

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes
from spotgrace.asgi import GraceMiddleware, LifespanGrace

lg = LifespanGrace()
STATS: list[dict] = []  # type: ignore[type-arg]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        await receive()
        async with lg.serve(stop_timeout=10, drain_delay=0.5) as grace:
            await send({"type": "lifespan.startup.complete"})
            await receive()
        STATS.append(grace.statistics())
        print("LIFESPAN-END", json.dumps(STATS[-1]), flush=True)
        await send({"type": "lifespan.shutdown.complete"})
        return
    ms = int(scope["query_string"].decode().partition("=")[2] or 0)
    await asyncio.sleep(ms / 1000)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


mw = GraceMiddleware(app, grace=lg)


async def one(port: int, sigterm: bool) -> list[object]:
    server = uvicorn.Server(uvicorn.Config(mw, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn has no event for it)
        await asyncio.sleep(0.02)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("/work?ms=0"))
    first = await read_response(reader)
    out: list[object] = [("first", first.status, first.close, mw._gate.open)]
    if sigterm:
        writer.write(request_bytes("/work?ms=1500"))
        await asyncio.sleep(0.3)
        inflight_before = lg._grace.statistics()["inflight"]  # type: ignore[union-attr]
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        inflight_after = lg._grace.statistics()["inflight"]  # type: ignore[union-attr]
        slow = await asyncio.wait_for(read_response(reader), 10)
        out.append(("slow", slow.status, slow.close, inflight_before, inflight_after))
        print("RUN2-SLOW", json.dumps(out), flush=True)
    else:
        server.should_exit = True
    writer.close()
    await task
    out.append(("gate open after", mw._gate.open))
    return out


async def main() -> None:
    print("RUN1", json.dumps(await one(free_port(), False)), json.dumps(STATS[-1]), flush=True)
    print("RUN2", json.dumps(await one(free_port(), True)), json.dumps(STATS[-1]), flush=True)


asyncio.run(main())
