"""spotgrace.run(): main loops until cancelled at `stopping`; a hook runs after."""

import asyncio
import sys

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)


@spotgrace.on_shutdown
async def goodbye() -> None:
    say("hook:goodbye")


async def main(grace: spotgrace.AsyncGrace) -> None:
    say("ready")
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        say("main-cancelled")
        raise


spotgrace.run(main)
