"""A hook that never returns (argv[1]: sync | block-loop); stop_timeout from the env."""

import asyncio
import sys
import threading
import time

import spotgrace

if sys.argv[1] == "sync":

    @spotgrace.on_shutdown
    def hang() -> None:
        threading.Event().wait()

else:

    @spotgrace.on_shutdown
    async def block() -> None:
        time.sleep(3600)


async def main() -> None:
    async with spotgrace.graceful() as grace:
        print("ready", flush=True)
        await grace.wait()


asyncio.run(main())
