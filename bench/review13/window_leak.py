"""Reproducer: a notice from another thread landing between `live[lean] = task` and
the re-check `if gate.open:` in GraceMiddleware.__call__ leaves the request counted
in the tracker forever (the branch `del live[lean]` neither marks it ended nor
releases it). The window is widened by a dict whose __setitem__ lets another
thread take the notice there (what a GIL switch at that point does).
"""

from __future__ import annotations

import asyncio
import sys
import threading

import spotgrace
from spotgrace.asgi import GraceMiddleware


class _Window(dict):  # type: ignore[type-arg]
    def __init__(self, grace: object) -> None:
        super().__init__()
        self.grace = grace
        self.fired = False

    def __setitem__(self, key: object, value: object) -> None:
        super().__setitem__(key, value)
        if not self.fired:
            self.fired = True
            t = threading.Thread(target=self.grace.request_shutdown, args=("window",))  # type: ignore[attr-defined]
            t.start()
            t.join()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def main() -> int:
    sent: list[dict] = []  # type: ignore[type-arg]

    async def send(m):  # type: ignore[no-untyped-def]
        sent.append(m)

    async def receive():  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()

    async with spotgrace.graceful(
        signals=(), exit_code="return", stop_timeout=6, drain_delay=1, drain_timeout=2
    ) as grace:
        mw = GraceMiddleware(app, grace=grace)
        mw._live = _Window(grace)
        scope = {
            "type": "http",
            "path": "/work",
            "method": "GET",
            "headers": [],
            "query_string": b"",
        }
        await mw(scope, receive, send)
        stats = grace.statistics()
        print("after the request ended:", {k: stats[k] for k in ("inflight", "inflight_total")})
        print("status sent:", [m.get("status") for m in sent if m["type"] == "http.response.start"])
    print("verdict/stats at end:", grace.statistics().get("inflight"))
    return 1 if stats["inflight"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
