"""Finding 3: httptools, pipelined: the request running at the notice answers keep-alive.

With two requests pipelined on one connection, uvicorn's httptools protocol
sets ``protocol.cycle`` to the *queued* request's cycle as soon as its headers
are parsed (the running request's cycle is only referenced by its task). At the
notice ``UvicornBook.mark_close`` marks ``connection.cycle`` only: the queued
request's, not the one running. The running request's response, started long
after the notice (not the documented one-loop-turn lag), says keep-alive. The
lean path before 48a7e67 (kept by a subclass) said ``Connection: close``.
(``serve()`` shares ``mark_close``: same there.)

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/r3_pipelined_no_close.py [httptools|h11] [lean]
Exit status 1 when the response started after the notice lacks Connection: close.
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

HTTP = sys.argv[1] if len(sys.argv) > 1 else "httptools"
LEAN = sys.argv[2:] == ["lean"]


class Lean(GraceMiddleware):
    """A subclass keeps the lean path (the behaviour before 48a7e67)."""


class App:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            self.holding = True
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def main() -> int:
    app = App()
    async with spotgrace.graceful(
        signals=(), exit_code="return", stop_timeout=10, drain_delay=2
    ) as grace:
        port = free_port()
        config = uvicorn.Config(
            (Lean if LEAN else GraceMiddleware)(app, grace=grace),
            host="127.0.0.1",
            port=port,
            log_level="critical",
            lifespan="off",
            http=HTTP,
        )
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes("/warm"))
        await read_response(reader)
        writer.write(request_bytes("/hold") + request_bytes("/next"))  # pipelined
        while not app.holding:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        grace.request_shutdown("test")  # the notice; the lame duck lasts 2 s
        await asyncio.sleep(0.5)  # many loop turns: the takeover has marked what it marks
        app.release.set()
        first = await asyncio.wait_for(read_response(reader), 10)
        try:
            second: Any = (await asyncio.wait_for(read_response(reader), 5)).status
        except Exception as exc:
            second = type(exc).__name__
        writer.close()
        server.should_exit = True
        await task
    print(
        f"{HTTP} {'lean' if LEAN else 'direct'}: /hold -> {first.status} "
        f"connection={first.headers.get('connection')!r}; /next -> {second}"
    )
    bad = not first.close
    print("BUG: a response started 0.5 s after the notice says keep-alive" if bad else "held")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
