"""An asyncio service (no web framework) under spotgrace.run().

Consumers take work concurrently; each unit is marked in flight. On SIGTERM
readiness goes red, `main` is cancelled once intake must stop, in-flight units
finish, and the cleanup hooks run within the budget.

    python examples/async_service.py
"""

from __future__ import annotations

import asyncio
import random
import sys

import spotgrace


def say(line: str) -> None:
    """Print one whole line: spotgrace's JSON lines share stdout, and print()
    writes its newline apart, so one of them could land in between."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@spotgrace.on_shutdown(order=0, timeout=3)
async def close_pool() -> None:
    await asyncio.sleep(0.05)  # e.g. await pool.close()
    say("pool closed")


async def consume(grace: spotgrace.AsyncGrace, name: str) -> None:
    while not grace.stopping:  # intake stops here; the unit in hand finishes
        async with grace.inflight():
            await asyncio.sleep(random.uniform(0.1, 0.6))  # one unit of work
            say(f"{name}: unit done")


async def main(grace: spotgrace.AsyncGrace) -> None:
    # spotgrace.run() cancels `main` only after the work in flight has drained,
    # so the TaskGroup's consumers finish the unit in hand and return.
    say("service ready")
    async with asyncio.TaskGroup() as tg:
        for i in range(4):
            tg.create_task(consume(grace, f"consumer-{i}"))


if __name__ == "__main__":
    spotgrace.configure_json_logging(stream=sys.stdout)
    spotgrace.run(main, stop_timeout=20)
