"""A Celery app whose task holds the GIL, for tests/test_celery_gil.py.

``hold_gil(tag, seconds)`` records ``started`` in Redis, then calls libc's
``sleep`` through ``ctypes.PyDLL``, which keeps the GIL: in a threads-pool
worker no Python thread of the worker runs until it returns.
"""

from __future__ import annotations

import ctypes
import json
import os

import redis
from celery import Celery

import spotgrace.celery

BROKER = os.environ["CELERY_TEST_BROKER"]

app = Celery("celery_gil_app", broker=BROKER)
app.conf.update(task_default_queue="work", worker_hijack_root_logger=False,
                worker_redirect_stdouts=False)  # fmt: skip
spotgrace.celery.install(app, health_file=False)
_redis = redis.Redis.from_url(BROKER)


@app.task(name="celery_gil_app.hold_gil")
def hold_gil(tag: str, seconds: int) -> None:
    """Sleep ``seconds`` in C with the GIL held."""
    _redis.rpush("started", json.dumps({"tag": tag, "pid": os.getpid()}))
    ctypes.PyDLL(None).sleep(seconds)
