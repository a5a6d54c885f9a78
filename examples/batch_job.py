#!/usr/bin/env python3
"""A batch job that resumes where it stopped: spotgrace.checkpoint.checkpointed.

    python examples/batch_job.py --count 1000 --output results.jsonl
    python examples/batch_job.py --count 1000 --output results.jsonl   # after SIGTERM: resumes

It processes a data set (the lines of ``--input``, or the numbers
``0..count-1``) and appends one JSON line per item to ``--output``. Progress
is checkpointed to a file (``--checkpoint``) or, on Fargate, to Redis
(``--redis-url``): every ``--every`` items, and once more on the way out.

On SIGTERM the job finishes the item in hand, takes no new one, saves the
exact position and exits 75 ("interrupted, retry me": a scheduler that
retries on 75 resumes it; a run that finishes exits 0); the next run skips
what is done, so with a
graceful stop nothing is processed twice. After a ``kill -9``
or a crash, up to ``--every`` items are processed again: the output is
at-least-once, and every line carries its item's index so a reader can keep
the last line per index (see docs/batch-jobs.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import spotgrace
from spotgrace.checkpoint import CheckpointStore, FileCheckpoint, RedisCheckpoint, checkpointed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, help="one item per line (default: --count numbers)")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--output", type=Path, default=Path("results.jsonl"))
    p.add_argument("--checkpoint", type=Path, default=Path("batch.checkpoint.json"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="keep the checkpoint in Redis instead of a file")  # fmt: skip
    p.add_argument("--key", default="batch", help="checkpoint key: one per data set / run")
    p.add_argument("--every", type=int, default=10, help="save every N items")
    p.add_argument("--every-seconds", type=float, default=5.0, help="and every T seconds")
    p.add_argument("--work-seconds", type=float, default=0.01, help="simulated work per item")
    p.add_argument("--reset", action="store_true", help="forget the checkpoint, start over")
    return p.parse_args(argv)


def items(args: argparse.Namespace) -> Iterable[str]:
    """The data set, in the same order on every run (checkpointed() relies on it)."""
    if args.input is None:
        return (str(i) for i in range(args.count))
    return _lines(args.input)


def _lines(path: Path) -> Iterator[str]:
    with path.open() as f:
        for line in f:
            yield line.rstrip("\n")


def process(item: str, work_seconds: float) -> str:
    """The work for one item (here: a hash, and some simulated time)."""
    time.sleep(work_seconds)
    return hashlib.sha256(item.encode()).hexdigest()[:16]


def open_store(args: argparse.Namespace) -> CheckpointStore:
    if args.redis_url:
        return RedisCheckpoint(args.redis_url, "batch:checkpoints", ttl=7 * 24 * 3600)
    return FileCheckpoint(args.checkpoint)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = open_store(args)
    if args.reset:
        store.clear(args.key)

    with spotgrace.graceful() as grace:
        run = checkpointed(
            items(args),
            store,
            key=args.key,
            every=args.every,
            every_seconds=args.every_seconds,
            grace=grace,
        )
        with args.output.open("a") as out:
            print(f"batch: started, pid {os.getpid()}", flush=True)
            for item in run:
                result = process(item, args.work_seconds)
                # The output line must be written before the next item is
                # taken: that is when checkpointed() counts this one as done.
                out.write(json.dumps({"item": item, "result": result}) + "\n")
                out.flush()
        if run.complete:
            print(f"batch: complete, {run.position} items", flush=True)
        else:
            print(f"batch: stopped at {run.position}; run again to resume", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
