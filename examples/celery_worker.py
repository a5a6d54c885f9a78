#!/usr/bin/env python3
"""A Celery worker that loses no task when its container stops (``spotgrace.celery``).

    python examples/celery_worker.py send --count 20            # queue 20 jobs
    python examples/celery_worker.py worker -P prefork -c 4     # run a worker
    # or, the usual way:  celery -A celery_worker worker  (from examples/)

Environment: ``REDIS_URL`` (default ``redis://localhost:6379/0``) and
``SPOTGRACE_STOP_TIMEOUT`` (the ECS ``stopTimeout``; default 30). The one line
that matters is ``spotgrace.celery.install(app)``. On SIGTERM the worker stops
taking jobs at once; jobs in hand get 80% of ``stop_timeout - margin`` to
finish; a job that cannot finish goes back on the queue (another worker takes
it at once) and its process is stopped; the hook below runs; the worker exits
before the deadline: 0, or 70 when a job was cut (requeued, but not done). A job's result and its "done" mark are written in one
Redis transaction keyed by the job id, so a job that runs twice (at least
once delivery) is recorded once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import redis
from celery import Celery

import spotgrace
import spotgrace.celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

app = Celery("celery_worker", broker=REDIS_URL)
app.conf.update(task_default_queue="jobs", broker_connection_retry_on_startup=True)
# Longer than your longest task: a worker that is killed outright (OOM, kill -9)
# gets its unacked tasks redelivered after this many seconds.
app.conf.broker_transport_options = {"visibility_timeout": 3600}
installed = spotgrace.celery.install(app)  # the one line

_store = redis.Redis.from_url(REDIS_URL)


@app.task
def resize(job_id: str, seconds: float) -> None:
    """Pretend work; the result is recorded once per job id, however often it runs."""
    time.sleep(seconds)
    with _store.pipeline() as pipe:
        pipe.hsetnx("results", job_id, f"done by {os.getpid()}")
        pipe.sadd("done", job_id)
        pipe.execute()


@spotgrace.on_shutdown(timeout=2)
def close_store() -> None:
    """A cleanup hook: runs once in the worker's main process, within the budget."""
    _store.close()
    print("celery_worker: store closed", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["send"]:
        parser = argparse.ArgumentParser(prog="celery_worker.py send")
        parser.add_argument("--count", type=int, default=10)
        parser.add_argument("--seconds", type=float, default=1.0)
        args = parser.parse_args(argv[1:])
        for i in range(args.count):
            resize.delay(f"job-{i}", args.seconds)
        print(f"sent {args.count} jobs", flush=True)
        return 0
    if argv[:1] == ["worker"]:
        print(f"celery_worker: budget {installed.budget}", flush=True)
        app.worker_main(["worker", *argv[1:]])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
