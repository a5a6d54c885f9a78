"""Finding 2: a request task created but not yet started at the notice is counted twice.

At the notice ``_at_notice`` enters every not-done task of uvicorn's
``state.tasks`` (``enter_untracked``). A task uvicorn has created but the loop
has not stepped yet (it has not reached the middleware) is among them; when it
runs, the gate is closed, so it takes the full path and ``grace.inflight()``
enters it again. The count balances (two enters, two exits) but
``inflight_total`` (and ``inflight_peak``) count that request twice.

Deterministic set-up: requests A and B pipelined on one keep-alive connection.
When A's response completes, uvicorn creates B's task (on_response_complete),
inside A's last ``send``. A's app then lets the notice be taken in another
thread (as the coordinator's thread would, at any moment the loop thread is
between creating a task and stepping it) before B's task first runs.
Under load the same window is open for every task created in one loop turn
and stepped in the next.

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/r2_total_counted_twice.py [httptools|h11] [lean]
Exit status 1 when inflight_total is not the number of requests counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any

import uvicorn

import spotgrace
from bench.harness import free_port
from bench.loadclient import read_response, request_bytes
from spotgrace.asgi import GraceMiddleware

HTTP = sys.argv[1] if len(sys.argv) > 1 else "httptools"
#: "lean" as 2nd argument: a subclass (keeps the lean path, as before 48a7e67): the baseline.
LEAN = sys.argv[2:] == ["lean"]


class Lean(GraceMiddleware):
    pass


class App:
    def __init__(self) -> None:
        self.grace: Any = None
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        if scope["path"] == "/a":
            # B's task exists now (uvicorn started it in A's last send) and has not run.
            notice = threading.Thread(target=self.grace.request_shutdown, args=("test",))
            notice.start()
            notice.join()
            await asyncio.sleep(0.2)


async def main() -> int:
    app = App()
    async with spotgrace.graceful(
        signals=(), exit_code="return", stop_timeout=10, drain_delay=1
    ) as grace:
        app.grace = grace
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
        await read_response(reader)  # the first request finds uvicorn
        writer.write(request_bytes("/a") + request_bytes("/b"))  # pipelined
        a = await asyncio.wait_for(read_response(reader), 10)
        b = await asyncio.wait_for(read_response(reader), 10)
        writer.close()
        while grace.statistics()["inflight"]:  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        stats = grace.statistics()
        server.should_exit = True
        await task
    print(HTTP, "responses:", a.status, b.status, "b says close:", b.close, "app saw:", app.seen)
    print("statistics:", stats)
    # Counted requests: A (in flight at the notice) and B (started after it): 2.
    bad = stats["inflight_total"] != 2 or stats["inflight"] != 0
    print("BUG: inflight_total counts a request twice" if bad else "held")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
