"""A gunicorn worker's inflight_count read by two threads at once dips below the truth.

_Counter.count reads ``next(ended)`` then ``next(started)``: each read advances
both counters. Two readers interleaved (T1 ended, T2 ended, T2 started, T1
started) give T2 a count one below the true one: -1 with nothing in flight.
Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/counter_readers.py
"""

from __future__ import annotations

import sys
import threading
import time

from spotgrace._http._prefork import SharedState, WorkerGrace

sys.setswitchinterval(1e-6)
worker = WorkerGrace(SharedState())
seen: list[int] = []
stop = time.monotonic() + 3


def reader() -> None:
    low = 0
    while time.monotonic() < stop:
        c = worker.inflight_count
        low = min(low, c)
    seen.append(low)


threads = [threading.Thread(target=reader) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"nothing in flight; lowest inflight_count seen by each reader: {seen}")
print(f"after: {worker.inflight_count}")
