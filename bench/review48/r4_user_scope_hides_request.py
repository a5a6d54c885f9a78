"""Finding 4: a request inside the app's own ``grace.inflight()`` at the notice is not counted.

``InflightTracker.enter_untracked`` skips a task already in the tracker,
meaning "a request on the full path". But the app's own in-flight scopes
(``async with grace.inflight():`` around a critical section, ``@grace.inflight()``
on a helper, DESIGN's public API) put the request's task there too. A direct
request whose task is inside such a scope at the notice is not counted: when
the app's scope ends (the request is still running) the count reaches 0, the
drain ends, and a block that leaves at the notice (the pattern of
tests/test_asgi_alone_uvicorn.py / docs: "a block that leaves as soon as
grace.wait() returns still drains those requests") returns before the
response is written. The lean path (a subclass: before 48a7e67) counted it.

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/r4_user_scope_hides_request.py [lean]
Exit status 1 when the block left before the request ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import uvicorn

import spotgrace
from bench.harness import free_port
from bench.loadclient import read_response, request_bytes
from spotgrace.asgi import GraceMiddleware

LEAN = sys.argv[1:] == ["lean"]


class Lean(GraceMiddleware):
    """A subclass keeps the lean path (the behaviour before 48a7e67)."""


class App:
    def __init__(self) -> None:
        self.grace: Any = None
        self.inside = asyncio.Event()
        self.done = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/work":
            async with self.grace.inflight():  # the app marks a critical section
                self.inside.set()
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # then goes on (a render, an upstream call...)
            self.done = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Holder:
    def __init__(self) -> None:
        self.middleware: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.middleware(scope, receive, send)


async def main() -> int:
    app = App()
    holder = Holder()
    port = free_port()
    config = uvicorn.Config(
        holder, host="127.0.0.1", port=port, log_level="critical", lifespan="off"
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (a poll)
        await asyncio.sleep(0.01)
    async with spotgrace.graceful(signals=(), exit_code="return", stop_timeout=10) as grace:
        app.grace = grace
        holder.middleware = (Lean if LEAN else GraceMiddleware)(app, grace=grace)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("/warm"))
        await read_response(reader)  # the first request finds uvicorn
        writer.write(request_bytes("/work"))
        await app.inside.wait()
        grace.request_shutdown("test")
        counted = grace.statistics()["inflight"]
        # the block leaves at once: only the drain keeps it open
    done_when_block_left = app.done
    stats = grace.statistics()
    response = await asyncio.wait_for(read_response(reader), 10)
    writer.close()
    server.should_exit = True
    await task
    print(
        f"{'lean' if LEAN else 'direct'}: counted at the notice: {counted} (the app's scope + "
        f"the request?), request done when the block left: {done_when_block_left}, "
        f"stats {stats}, response {response.status}"
    )
    bad = not done_when_block_left
    print("BUG: the drain ended while the request was still running" if bad else "held")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
