"""Finding 1, the documented LifespanGrace pattern: a second uvicorn.Server in the same process.

The module-level ``app = GraceMiddleware(api, grace=LifespanGrace())`` of
docs/asgi.md (here bench/review48/alone_app.py), served twice in one process
one after the other, as a test fixture or a restarted server does. The first
server's first request turns the instance into ``_OnUvicorn``; the second
server's ``Config.load()`` then picks ASGI 2 for it.

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/r1b_lifespangrace_second_server.py
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import uvicorn

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes


async def run_once() -> tuple[str, int]:
    port = free_port()
    config = uvicorn.Config(
        "bench.review48.alone_app:app",
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="auto",
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (a poll)
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("/work"))
    status = (await asyncio.wait_for(read_response(reader), 10)).status
    writer.close()
    server.should_exit = True
    await task
    return config.interface, status


async def main() -> int:
    first = await run_once()
    second = await run_once()
    print("first server:", first, " second server:", second)
    bad = second[1] != 200
    print("BUG: the second server serves 500s" if bad else "held")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
