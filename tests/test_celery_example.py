"""``examples/celery_worker.py`` runs as documented: jobs done, a long one requeued, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from ._proc import ROOT, Proc, kill_quietly
from ._redis import redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures
from .helpers.celery_workers import wait_for

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "celery_worker.py"


def test_example_worker_finishes_short_jobs_requeues_a_long_one_and_exits_70(
    redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    env.update(
        REDIS_URL=redis_url,
        SPOTGRACE_STOP_TIMEOUT="6",
        SPOTGRACE_CELERY_HEALTH_FILE=str(tmp_path / "health.json"),
        PYTHONUNBUFFERED="1",
    )
    worker = Proc(
        subprocess.Popen(
            [sys.executable, str(EXAMPLE), "worker", "-P", "threads", "-c", "2",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "INFO"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env, cwd=tmp_path, start_new_session=True,
        )
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        worker.wait_for_line(" ready.", timeout=60)

        def send(*args: str) -> None:
            cmd = [sys.executable, str(EXAMPLE), "send", *args]
            subprocess.run(cmd, env=env, check=True, timeout=60, capture_output=True)

        send("--count", "4", "--seconds", "0.3")
        assert wait_for(lambda: client.scard("done") == 4, timeout=30) is not None
        send("--count", "1", "--seconds", "600")  # job-0 again, far too long for the budget
        assert wait_for(lambda: client.llen("jobs") == 0, timeout=10) is not None
        time.sleep(0.5)  # it is running now
        check = [sys.executable, "-m", "spotgrace.celery", "health"]
        assert subprocess.run(check, env=env, timeout=30, check=False).returncode == 0
        sent = worker.signal(signal.SIGTERM)
        code = worker.finish(timeout=20)
        took = time.monotonic() - sent
        assert code == 70, worker.output()  # the long job was cut (and requeued)
        assert took < 6, f"exited {took:.2f} s after SIGTERM"
        assert client.llen("jobs") == 1, "the long job must be back on the queue"
        assert "celery_worker: store closed" in worker.output()
        assert client.hlen("results") == 4
    finally:
        kill_quietly(worker)
        client.close()
