import asyncio

import spotgrace


async def main() -> None:
    async with spotgrace.graceful() as grace:
        print("ready", flush=True)
        await grace.wait()


asyncio.run(main())
