"""An async batch job under spotgrace.run(), for the resume tests.

    async_batch.py CHECKPOINT OUTPUT COUNT EVERY WORK_SECONDS

Processes an async source of COUNT items with checkpointed(); each item sleeps
WORK_SECONDS and then appends its index to OUTPUT. EVERY may be "none" (only
the final save). Prints "ready" once iterating, and the final state at the end.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import spotgrace
from spotgrace.checkpoint import FileCheckpoint, checkpointed


async def source(count: int) -> AsyncIterator[int]:
    """Items that arrive asynchronously."""
    for i in range(count):
        await asyncio.sleep(0)
        yield i


async def main(grace: spotgrace.AsyncGrace) -> None:
    """Process the source; spotgrace.run cancels this when shutdown starts."""
    path, output, count, every, work = sys.argv[1:6]
    store = FileCheckpoint(path)
    run = checkpointed(
        source(int(count)),
        store,
        key="async",
        every=None if every == "none" else int(every),
        every_seconds=None,
        grace=grace,
    )
    print("ready", flush=True)
    with open(output, "a") as out:
        async for item in run:
            await asyncio.sleep(float(work))  # where a cancellation usually lands
            out.write(f"{item}\n")
            out.flush()
    print(f"complete={run.complete} position={run.position}", flush=True)


if __name__ == "__main__":
    spotgrace.run(main)
