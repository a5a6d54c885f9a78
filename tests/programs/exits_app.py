"""One row of the exit-code table per mode: prints "ready", then waits for SIGTERM.

    python exits_app.py MODE [CHECKPOINT_PATH]

Prints "after-block" if code after the ``with`` block (or after ``run()``) runs.
"""

import asyncio
import sys
import threading
import time

from _out import say

import spotgrace
from spotgrace.checkpoint import FileCheckpoint, checkpointed

spotgrace.configure_json_logging(stream=sys.stdout)
MODE = sys.argv[1]
BUDGET = {"stop_timeout": 6.0, "margin": 1.0}


def sync_block(**options: object) -> None:
    with spotgrace.graceful(**{**BUDGET, **options}) as grace:  # type: ignore[arg-type]
        if MODE == "hook-fails":

            @grace.on_shutdown
            def broken() -> None:
                raise RuntimeError("flush failed")

        elif MODE == "hook-timeout":

            @grace.on_shutdown(timeout=0.3)
            def slow() -> None:
                time.sleep(30)

        elif MODE == "late-hook":

            @grace.on_shutdown
            def registers_another() -> None:
                grace.on_shutdown(lambda: say("hook:late-ran"), name="late")

        elif MODE == "watchdog":

            @grace.on_shutdown
            async def blocks_the_loop() -> None:
                time.sleep(30)

        elif MODE == "slow-hook":

            @grace.on_shutdown
            def slow_but_in_time() -> None:
                say("hook:slow-started")
                time.sleep(3)

        elif MODE == "mark-incomplete":
            grace.mark_incomplete("report half written")
        elif MODE == "request":
            threading.Timer(0.3, grace.request_shutdown).start()
        say("ready")
        if MODE == "sys-exit":
            grace.wait()
            sys.exit(42)
        if MODE == "checkpoint":
            store = FileCheckpoint(sys.argv[2])
            for _item in checkpointed(range(200), store, key="job", every=1, grace=grace):
                time.sleep(0.005)
        else:
            grace.wait()
    say(f"after-block exit_code={grace.exit_code}")


async def consumer(grace: spotgrace.AsyncGrace) -> None:
    while True:
        async with grace.inflight():
            await asyncio.sleep(30)  # an item that takes longer than the drain allows


async def taskgroup_main(grace: spotgrace.AsyncGrace) -> str:
    say("ready")
    async with asyncio.TaskGroup() as tg:
        for _ in range(3):
            tg.create_task(consumer(grace))
    return "main returned"


async def returning_main(grace: spotgrace.AsyncGrace) -> str:
    say("ready")
    await asyncio.sleep(0.3)
    grace.request_shutdown()
    await grace.wait()
    return "main returned"


async def drain_cancel() -> None:
    async with spotgrace.graceful(**BUDGET, drain_timeout=1.0) as grace:  # type: ignore[arg-type]
        tasks = [asyncio.create_task(consumer(grace)) for _ in range(2)]
        await asyncio.sleep(0.05)  # both consumers inside their in-flight scope first
        say("ready")
        await grace.wait()
    del tasks


if MODE == "run-cancel":
    result = spotgrace.run(taskgroup_main, **BUDGET, drain_timeout=2.5)
    say(f"after-block {result}")
elif MODE == "run-return":
    result = spotgrace.run(returning_main, **BUDGET)
    say(f"after-block {result}")
elif MODE == "drain-cancel":
    asyncio.run(drain_cancel())
    say("after-block")
elif MODE == "always-zero":
    MODE = "hook-fails"
    sync_block(exit_code=0)
elif MODE == "signal-policy":
    sync_block(exit_code="signal")
elif MODE == "return-policy":
    MODE = "hook-fails"
    sync_block(exit_code="return")
elif MODE == "bad-config":
    sync_block(margin=10)
else:
    sync_block()
