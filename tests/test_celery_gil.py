"""A threads-pool worker whose task holds the GIL is still gone before ``stop_timeout``.

With the GIL held by a task (``ctypes.PyDLL``), no Python thread of the worker
runs: not the signal handlers, not the sequence, not spotgrace's watchdog.
Only the watcher process (``spotgrace/celery/_gilwatch.py``), woken by
Python's C-level signal handler through the wakeup fd, can end it in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from ._proc import Proc, kill_quietly
from ._redis import RedisServer, redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures
from .helpers.celery_workers import QUEUE, unacked, wait_for

pytestmark = pytest.mark.slow

STOP_TIMEOUT = 6.0
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def worker(redis_url: str) -> Iterator[Proc]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    env.update(CELERY_TEST_BROKER=redis_url, SPOTGRACE_STOP_TIMEOUT=str(STOP_TIMEOUT),
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")  # fmt: skip
    cmd = [sys.executable, "-m", "celery", "-A", "tests.helpers.celery_gil_app", "worker",
           "-P", "threads", "-c", "2", "-Q", QUEUE, "--without-heartbeat", "--without-gossip",
           "--without-mingle", "-l", "INFO"]  # fmt: skip
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
                             start_new_session=True)  # fmt: skip
    proc = Proc(popen)
    yield proc
    kill_quietly(proc)


def test_task_holding_the_gil_worker_gone_before_stop_timeout(redis_url: str, worker: Proc) -> None:
    worker.wait_for_line(" ready.", timeout=60)
    client = redis.Redis.from_url(redis_url)
    sender = Celery("sender", broker=redis_url)
    try:
        sender.send_task("celery_gil_app.hold_gil", args=("g1", 60), queue=QUEUE)
        assert wait_for(lambda: client.llen("started") == 1, timeout=30) is not None
        time.sleep(0.3)  # the task is in C now, GIL held
        sent = worker.signal(signal.SIGTERM)
        code = worker.finish(timeout=STOP_TIMEOUT + 15)
        took = time.monotonic() - sent
        assert took < STOP_TIMEOUT, f"gone {took:.2f} s after SIGTERM:\n{worker.output()}"
        assert code == -signal.SIGKILL, worker.output()
        assert "celery.gil_watchdog_killed" in worker.output()
        assert unacked(client) == 1, "acks_late: the message stays for redelivery"
    finally:
        sender.close()
        client.close()
