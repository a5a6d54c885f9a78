"""aiorun: run() forever; SIGTERM cancels everything and stops the loop."""

import asyncio

from aiorun import run


async def main() -> None:
    print("ready", flush=True)
    await asyncio.Event().wait()


run(main(), stop_on_unhandled_errors=True)
