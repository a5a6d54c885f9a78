"""300 lean requests (ok / raising / cancelled / event streams listening for the
disconnect) across a notice from the loop or another thread, half the streams and
the "cancel" ones cancelled after it: the count must come back to 0, nothing pending.
20 rounds; prints the bad ones."""

import asyncio
import random
import threading

import structlog

import spotgrace
from spotgrace.asgi import GraceMiddleware

structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


async def app(scope, receive, send):
    kind = scope["query_string"].decode()
    if kind == "sse":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        while True:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            try:
                m = await asyncio.wait_for(receive(), 0.01)
            except TimeoutError:
                continue
            if m["type"] == "http.disconnect":
                return
    await asyncio.sleep(random.uniform(0, 0.05))
    if kind == "raise":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def recv():
    await asyncio.Event().wait()


async def send(m):
    pass


async def run(thread_notice):
    async with spotgrace.graceful(
        signals=(), exit_code="return", stop_timeout=10, drain_delay=0.2, drain_timeout=3
    ) as grace:
        mw = GraceMiddleware(app, grace=grace)
        tasks = []
        for _ in range(300):
            kind = random.choice(["ok", "raise", "sse", "cancel"])
            s = {
                "type": "http",
                "path": "/w",
                "method": "GET",
                "headers": [],
                "query_string": kind.encode(),
            }
            t = asyncio.ensure_future(mw(s, recv, send))
            t.kind = kind
            tasks.append(t)
        await asyncio.sleep(0.02)
        if thread_notice:
            th = threading.Thread(target=grace.request_shutdown, args=("x",))
            th.start()
        else:
            grace.request_shutdown("x")
        for t in tasks:
            if t.kind in ("cancel", "sse") and random.random() < 0.7:
                t.cancel()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)
        if thread_notice:
            await asyncio.to_thread(th.join)
        st = grace.statistics()
        return st["inflight"], [t.kind for t in tasks if not t.done()]


async def main():
    bad = 0
    for i in range(20):
        left, pend = await run(i % 2 == 0)
        if left or pend:
            bad += 1
            print("BAD", left, pend[:5])
    print("bad", bad, "of 20")


asyncio.run(main())
