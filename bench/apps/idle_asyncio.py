"""Plain asyncio: the usual add_signal_handler + Event pattern."""

import asyncio
import signal


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()


asyncio.run(main())
