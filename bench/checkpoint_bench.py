#!/usr/bin/env python3
"""Benchmark: checkpoint save cost, and checkpointed() over a plain loop.

    python bench/checkpoint_bench.py [--redis-url URL] [--quick]

Without ``--redis-url`` it starts a throwaway ``redis-server`` on 127.0.0.1
(skipping the Redis rows when there is none). The file store writes in a temp
directory under the current directory (a real disk, not tmpfs, so ``fsync``
costs what it costs). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from spotgrace.checkpoint import CheckpointStore, FileCheckpoint, RedisCheckpoint, checkpointed


@contextlib.contextmanager
def throwaway_redis(workdir: Path) -> Iterator[str | None]:
    """A redis-server on a free port for the benchmark, or None without the binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        probe = RedisCheckpoint(url, "bench-probe", timeout=1)
        for _ in range(100):
            try:
                probe.load("x")
                break
            except Exception:  # not up yet
                time.sleep(0.05)
        probe.close()
        yield url
    finally:
        proc.terminate()
        proc.wait()


def save_cost(store: CheckpointStore, calls: int) -> tuple[float, float]:
    """Median and p95 of one save (seconds) over ``calls`` saves of a small record."""
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        store.save("bench", {"position": i, "complete": False})
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def throughput(fn: Callable[[], None], items: int, repeat: int = 3) -> float:
    """Best items per second of ``fn`` (which processes ``items`` items) over ``repeat`` runs."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = max(best, items / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    calls = 200 if args.quick else 1000
    items = 2_000 if args.quick else 20_000

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp, contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(throwaway_redis(Path(tmp)))
        stores: dict[str, Callable[[], CheckpointStore]] = {
            "file": lambda: FileCheckpoint(Path(tmp) / "bench.json"),
        }
        if url:
            stores["redis"] = lambda: RedisCheckpoint(url, "spotgrace-bench")

        print("| store | save median | save p95 |")
        print("|---|---|---|")
        for name, make in stores.items():
            med, p95 = save_cost(make(), calls)
            print(f"| {name} | {med * 1e6:.0f} µs | {p95 * 1e6:.0f} µs |")

        def plain() -> None:
            for i in range(items):
                _ = i * i

        base = throughput(plain, items)
        print()
        print(f"{items} items, trivial body; plain loop: {base:,.0f} items/s")
        print()
        print("| store | every | items/s | overhead per item |")
        print("|---|---|---|---|")
        for name, make in stores.items():
            for every in (1, 100, None):
                n = min(items, 2 * calls) if every == 1 else items

                def run(make: Callable[[], CheckpointStore] = make, every: int | None = every,
                        n: int = n) -> None:  # fmt: skip
                    store = make()
                    store.clear("tp")
                    for i in checkpointed(range(n), store, key="tp", every=every,
                                          every_seconds=None):  # fmt: skip
                        _ = i * i

                rate = throughput(run, n)
                overhead = 1 / rate - 1 / base
                label = "final save only" if every is None else str(every)
                print(f"| {name} | {label} | {rate:,.0f} | {overhead * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()
