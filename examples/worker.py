"""A sync queue-worker loop under spotgrace.

Run it, then press Ctrl-C or `kill -TERM <pid>`: the job in hand finishes, no
new job starts, the hooks run (lowest order first), and the process exits 0
well inside the stop timeout.

    python examples/worker.py
"""

from __future__ import annotations

import queue
import sys
import threading
import time

import spotgrace


def say(line: str) -> None:
    """Print one whole line: spotgrace's JSON lines share stdout, and print()
    writes its newline apart, so one of them could land in between."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


jobs: queue.Queue[int] = queue.Queue()


def producer() -> None:
    n = 0
    while True:
        n += 1
        jobs.put(n)
        time.sleep(0.2)


@spotgrace.on_shutdown(order=10, timeout=2)
def flush_metrics() -> None:
    say(f"flushed metrics; {jobs.qsize()} jobs left queued for the next worker")


@spotgrace.on_shutdown(order=0, timeout=5)
def close_connections() -> None:
    say("closed connections")


def handle(job: int) -> None:
    time.sleep(0.5)  # real work: an API call, a transcode, a DB write
    say(f"done job {job}")


def main() -> None:
    spotgrace.configure_json_logging(stream=sys.stdout)
    threading.Thread(target=producer, daemon=True).start()
    with spotgrace.graceful(stop_timeout=30) as grace:
        say("worker ready")
        while not grace.stopping:
            try:
                job = jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            with grace.inflight():
                handle(job)


if __name__ == "__main__":
    main()
