"""uvicorn.Server running GraceMiddleware alone (no serve()), for review 13's attacks.

argv: port mode nested notice
  mode:   wait  (should_exit after grace.wait(), await the server)
          eager (leave the block right after grace.wait())
  nested: 0 | same (the same middleware instance twice in one task) | two (two middlewares)
  notice: signal | handler (grace.request_shutdown() inside a request) | thread
Every response says X-Ready: the grace.ready read just before http.response.start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading

import uvicorn

import spotgrace
from spotgrace.asgi import GraceMiddleware

port, mode, nested, notice = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
GRACE: list[object] = []


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    grace = GRACE[0]
    path = scope["path"]
    q = scope["query_string"].decode()
    if path == "/notice":
        if notice == "handler":
            grace.request_shutdown("from a handler")  # type: ignore[attr-defined]
        else:
            threading.Thread(target=grace.request_shutdown, args=("from a thread",)).start()  # type: ignore[attr-defined]
    if path == "/sse":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        async def stream() -> None:
            while True:
                await send(
                    {"type": "http.response.body", "body": b"data: x\n\n", "more_body": True}
                )
                await asyncio.sleep(0.2)

        async def listen() -> None:  # as Starlette's StreamingResponse (ASGI spec < 2.4)
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming, listening = asyncio.ensure_future(stream()), asyncio.ensure_future(listen())
        await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        streaming.cancel()
        listening.cancel()
        print("SSE-APP-ENDED", flush=True)
        return
    if path == "/raise":
        raise RuntimeError("boom")
    ms = int(q.partition("=")[2] or 0)
    await asyncio.sleep(ms / 1000)
    ready = b"1" if grace.ready else b"0"  # type: ignore[attr-defined]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"x-ready", ready)],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def main() -> None:
    async with spotgrace.graceful(stop_timeout=12, drain_delay=1.0) as grace:
        GRACE.append(grace)
        wrapped = GraceMiddleware(app, grace=grace)
        if nested == "same":
            inner = wrapped

            async def twice(scope, receive, send):  # type: ignore[no-untyped-def]
                await inner(scope, receive, send)

            wrapped = GraceMiddleware(twice, grace=grace)
            wrapped = GraceMiddleware(wrapped, grace=grace)  # and once more
        elif nested == "two":
            wrapped = GraceMiddleware(wrapped, grace=grace)
        config = uvicorn.Config(
            wrapped, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110  (uvicorn has no event for it)
            await asyncio.sleep(0.02)
        print("STARTED", flush=True)
        await grace.wait()
        print("STOPPING " + json.dumps(grace.statistics()), flush=True)
        if mode == "eager":
            return
        server.should_exit = True
        await task
    print("STATS " + json.dumps(grace.statistics()), flush=True)


try:
    asyncio.run(main())
finally:
    for g in GRACE:
        print("FINAL " + json.dumps(g.statistics()), flush=True)  # type: ignore[attr-defined]
