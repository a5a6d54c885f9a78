"""The master's report pipe: many recycled workers must not hide the reports that count."""

from __future__ import annotations

import os
import time

import pytest

from spotgrace._http import _prefork


@pytest.mark.timeout(30)
def test_reports_of_recycled_workers_do_not_fill_the_pipe() -> None:
    # Before the fix the pipe was read only in on_exit: after ~16k worker exits
    # (max_requests recycling, reloads) it was full, the reports of the workers
    # stopped at shutdown were lost, and a clean shutdown exited 1.
    saved = list(_prefork._installed), list(_prefork._grace)
    from spotgrace.gunicorn._master import Master  # importing spotgrace.gunicorn installs too

    master = Master()  # installs its shared state process-wide: restored below
    try:
        master._pid = -1  # worker_exit() runs as in a worker (no hooks registered here)
        master._grace = master._graceful  # type: ignore[assignment]  # sequence stand-in
        for pid in range(100_000, 100_000 + 20_000):  # recycled while serving
            master.worker_exit(pid)
            if pid % 1000 == 0:
                master._read_reports()  # what the sequence thread does every 50 ms
        master._read_reports()
        master._stopped_workers = {7, 8}
        master.worker_exit(7)
        master.worker_exit(8)
        time.sleep(0.01)
        assert master._failed_workers() == set()
    finally:
        _prefork._installed[:], _prefork._grace[:] = saved
        os.close(master._read_fd)
        os.close(master._write_fd)
