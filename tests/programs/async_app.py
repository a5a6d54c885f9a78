"""An async app: three concurrent in-flight tasks of 0.5 s each, hooks, JSON events."""

import asyncio
import signal
import sys

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)


@spotgrace.on_shutdown(order=1)
async def close_pool() -> None:
    await asyncio.sleep(0.05)
    say("hook:close_pool")


@spotgrace.on_shutdown(order=0)
def stop_consumer() -> None:
    say("hook:stop_consumer")


async def worker(grace: spotgrace.AsyncGrace, name: str) -> None:
    n = 0
    while not grace.stopping:
        async with grace.inflight():
            n += 1
            say(f"{name}-start {n}")
            await asyncio.sleep(0.5)
            say(f"{name}-done {n}")


async def main() -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        async with spotgrace.graceful() as grace:
            tasks = [asyncio.create_task(worker(grace, f"w{i}")) for i in range(3)]
            await asyncio.sleep(0.1)
            say("ready")
            await grace.wait()
            await asyncio.gather(*tasks)
    finally:
        say(f"handlers-restored {signal.getsignal(signal.SIGTERM) == before}")


asyncio.run(main())
