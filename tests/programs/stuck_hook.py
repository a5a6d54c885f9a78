"""One misbehaving hook (argv[1]) between two good ones; async main; JSON events."""

import asyncio
import sys
import threading
import time

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)
mode = sys.argv[1]


@spotgrace.on_shutdown(order=0)
def first_good() -> None:
    say("hook:first_good")


if mode == "raise":

    @spotgrace.on_shutdown(order=1)
    def broken_hook() -> None:
        raise RuntimeError("database already gone")

elif mode == "sync-hang":

    @spotgrace.on_shutdown(order=1)
    def hang_forever() -> None:
        threading.Event().wait()

elif mode == "async-hang":

    @spotgrace.on_shutdown(order=1)
    async def hang_forever_async() -> None:
        await asyncio.Event().wait()

elif mode == "block-loop":

    @spotgrace.on_shutdown(order=1)
    async def block_the_loop() -> None:
        time.sleep(3600)

elif mode == "ignore-cancel":

    @spotgrace.on_shutdown(order=1)
    async def refuses_to_die() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue


# An explicit timeout: its second is reserved even if a hook before it hangs.
@spotgrace.on_shutdown(order=2, timeout=1)
def last_good() -> None:
    say("hook:last_good")


async def main() -> None:
    async with spotgrace.graceful() as grace:
        say("ready")
        await grace.wait()


asyncio.run(main())
