"""In-process checks of ``_cycle_of`` / ``UvicornBook`` on real uvicorn request cycles (3.11).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/cycle_checks.py

uvicorn's own ``h11_impl.RequestResponseCycle.run_asgi`` runs in real tasks (the
transport is a stand-in). Checks: the cycle read from a task not started yet, from the
running task itself, from a task whose app raised; the frame read changes nothing the
coroutine sees afterwards; the cost of ``_busy_cycles`` (what the 0.1 s sweep runs
twice) with many requests in flight.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import Any

from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.flow_control import FlowControl

from spotgrace._http._takeover import UvicornBook, _cycle_of

FAILS: list[str] = []


def check(ok: bool, what: str, detail: Any = "") -> None:
    print(("OK   " if ok else "FAIL ") + what + (f"  [{detail}]" if detail != "" else ""))
    if not ok:
        FAILS.append(what)


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _State:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        self.connections: set[Any] = set()


def make_cycle(accept: bytes = b"*/*") -> h11_impl.RequestResponseCycle:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    transport = _Transport()
    scope: dict[str, Any] = {"type": "http", "method": "GET", "headers": [(b"accept", accept)]}
    log = logging.getLogger("x")
    return h11_impl.RequestResponseCycle(
        scope,
        conn,
        transport,
        FlowControl(transport),
        log,
        log,
        False,
        [],  # type: ignore[arg-type]
        asyncio.Event(),
        lambda: None,
    )


async def main() -> None:
    state = _State()
    book = UvicornBook(state)
    seen: list[Any] = []

    # 1. A task not started yet: its frame's locals are the arguments.
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        me = asyncio.current_task()
        assert me is not None
        seen.append(_cycle_of(me))  # 2. the running task reads its own frame
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    cycle = make_cycle()
    task = asyncio.ensure_future(cycle.run_asgi(app))
    state.tasks.add(task)
    got = _cycle_of(task)
    check(got is cycle, "a task not started yet: its cycle", got)
    await asyncio.sleep(0)
    check(seen == [cycle], "the running task itself: its cycle", seen)
    check(book.mark_close() == 1, "mark_close marks it (not started)")
    release.set()
    await task
    out = b"".join(cycle.transport.out)  # type: ignore[attr-defined]
    check(b"connection: close" in out.lower() and b"\r\nok\r\n" in out, "answered, close", out[:60])
    check(_cycle_of(task) is None, "a done task: None")

    # 3. The app raises: run_asgi logs it, answers 500, the task ends.
    async def raising(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    logging.getLogger("x").disabled = True
    c3 = make_cycle()
    t3 = asyncio.ensure_future(c3.run_asgi(raising))
    state.tasks = {t3}
    await asyncio.sleep(0)
    check(_cycle_of(t3) is c3, "a task inside a raising app: its cycle")
    await t3
    check(book._busy_cycles() == [], "after it raised: no busy cycle")
    out3 = b"".join(c3.transport.out)  # type: ignore[attr-defined]
    check(out3.startswith(b"HTTP/1.1 500"), "raising app: 500 sent", out3[:20])

    # 4. Cost of the sweep's _busy_cycles with N requests in flight.
    async def waiting(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    for n in (1000, 5000):
        tasks = {asyncio.ensure_future(make_cycle().run_asgi(waiting)) for _ in range(n)}
        await asyncio.sleep(0)
        state.tasks = tasks
        t0 = time.perf_counter()
        for _ in range(20):
            found = book._busy_cycles()
        per = (time.perf_counter() - t0) / 20
        print(
            f"INFO _busy_cycles with {n} requests: {per * 1000:.2f} ms ({len(found)} found);"
            f" a sweep (2 calls / 0.1 s) ~{2 * per / 0.1 * 100:.1f}% of a core"
        )
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    gc.collect()


if __name__ == "__main__":
    asyncio.run(main())
    print("python", sys.version.split()[0], "FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)
