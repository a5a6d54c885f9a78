"""The same window with real threads, no patching: a line tracer in the loop thread
(what a debugger or coverage's Python tracer installs) gives the GIL a switch point
between `live[lean] = task` and `if gate.open:`; the notice comes from another thread
while 200 requests start. Counts the runs where a request stayed counted after all ended.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading

import structlog

import spotgrace
from spotgrace.asgi import GraceMiddleware


def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
    return tracer if frame.f_code.co_name == "__call__" else None


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def one_run() -> int:
    async def send(m):  # type: ignore[no-untyped-def]
        pass

    async def receive():  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    scope = {"type": "http", "path": "/work", "method": "GET", "headers": [], "query_string": b""}
    async with spotgrace.graceful(
        signals=(), exit_code="return", stop_timeout=5, drain_delay=0.5, drain_timeout=0.1
    ) as grace:
        mw = GraceMiddleware(app, grace=grace)
        notice = threading.Thread(
            target=lambda: (
                threading.Event().wait(random.uniform(0, 0.004)),
                grace.request_shutdown("t"),
            )
        )
        sys.settrace(tracer)
        threading.settrace(tracer)
        notice.start()
        try:
            tasks = [asyncio.ensure_future(mw(dict(scope), receive, send)) for _ in range(400)]
            await asyncio.gather(*tasks)
        finally:
            sys.settrace(None)
        await asyncio.to_thread(notice.join)
        return grace.statistics()["inflight"]


def main() -> int:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    runs = int(sys.argv[1]) if sys.argv[1:] else 40
    stuck = 0
    for _ in range(runs):
        try:
            left = asyncio.run(one_run())
        except BaseException:
            left = -1
        stuck += left != 0
    print(f"runs with a request stuck in the count: {stuck}/{runs}")
    return 1 if stuck else 0


if __name__ == "__main__":
    sys.exit(main())
