"""Edge rows of the exit-code table found in review: prints "ready", then waits.

python exits_review_app.py MODE [CHECKPOINT_PATH]
"""

import asyncio
import os
import signal
import sys
import threading

from _out import say

import spotgrace
from spotgrace.checkpoint import FileCheckpoint, checkpointed

spotgrace.configure_json_logging(stream=sys.stdout)
MODE = sys.argv[1]
BUDGET = {"stop_timeout": 6.0, "margin": 1.0}


async def exits_75_after_the_signal(grace: spotgrace.AsyncGrace) -> str:
    say("ready")
    await grace.wait()
    sys.exit(75)  # the app's own "retry me", from run()'s main


async def worker_exits_75(grace: spotgrace.AsyncGrace) -> None:
    await grace.wait()
    sys.exit(75)  # the app's own "retry me", from a task of the block


async def block_with_a_task_that_exits() -> None:
    async with spotgrace.graceful(**BUDGET) as grace:  # type: ignore[arg-type]
        task = asyncio.create_task(worker_exits_75(grace))
        say("ready")
        await asyncio.sleep(60)
    del task


def sync_mode() -> None:
    policy = "signal" if MODE == "signal-policy-notice" else "auto"
    with spotgrace.graceful(**BUDGET, exit_code=policy) as grace:  # type: ignore[arg-type]
        if MODE == "signal-policy-notice":
            grace.on_shutdown(lambda: 1 / 0, name="broken")
            # An early-warning notice: the platform wants the process gone, no signal came.
            threading.Timer(0.2, grace.request_shutdown, kwargs={"source": "watch"}).start()
        if MODE != "resumed-in-process":
            say("ready")
        if MODE == "checkpoint-last":
            store = FileCheckpoint(sys.argv[2])
            for item in checkpointed(range(5), store, key="job", every=1, grace=grace):
                if item == 4:  # the signal comes while the last item is in hand
                    os.kill(os.getpid(), signal.SIGTERM)
                    grace.wait(10)
            return
        if MODE == "resumed-in-process":
            store = FileCheckpoint(sys.argv[2])
            for item in checkpointed(range(10), store, key="job", every=1, grace=grace):
                if item == 3:
                    break  # stopped midway (marked incomplete)...
            for _item in checkpointed(range(10), store, key="job", every=1, grace=grace):
                pass  # ...then resumed and finished by this same process
            say(f"ready {store.load('job')}")
        grace.wait()
        if MODE == "sys-exit-300":
            sys.exit(300)
    say("after-block")


if MODE == "run-sys-exit":
    spotgrace.run(exits_75_after_the_signal, **BUDGET)
elif MODE == "task-sys-exit":
    asyncio.run(block_with_a_task_that_exits())
elif MODE == "plain":
    with spotgrace.graceful() as grace:
        say(f"ready stop_timeout={grace.options.stop_timeout:g} margin={grace.options.margin:g}")
        grace.wait()
else:
    sync_mode()
