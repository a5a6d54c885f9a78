"""A Celery app for tests/test_celery*.py and bench/celery_loss.py.

Environment: ``CELERY_TEST_BROKER`` (redis URL), ``CELERY_TEST_MODE``
(``spotgrace``: ``spotgrace.celery.install(app)``; ``soft``: Celery's own soft
shutdown with the same derived settings and no spotgrace; ``acks_late``: plain
Celery with ``task_acks_late``; ``plain``: Celery's defaults), ``CELERY_TEST_VISIBILITY``
(Redis ``visibility_timeout`` in seconds, with the restore scan every second),
``CELERY_TEST_WORKER`` (a name recorded with each event). Tasks record
``started``/``done`` in Redis lists as JSON: tag, pid, worker, time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import redis
from celery import Celery

import spotgrace
import spotgrace.celery

BROKER = os.environ["CELERY_TEST_BROKER"]
MODE = os.environ.get("CELERY_TEST_MODE", "spotgrace")

app = Celery("celery_app", broker=BROKER)
app.conf.update(
    task_default_queue="work",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)
if os.environ.get("CELERY_TEST_VISIBILITY"):
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ["CELERY_TEST_VISIBILITY"]),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
if MODE == "spotgrace":
    spotgrace.celery.install(app)
elif MODE == "acks_late":
    app.conf.task_acks_late = True
elif MODE == "soft":
    # Celery's own best: the settings spotgrace derives, without spotgrace; the
    # worker must run with REMAP_SIGTERM=SIGQUIT for SIGTERM to start it.
    derived = spotgrace.celery.install(Celery("scratch"), health_file=False)
    app.conf.update(derived.settings)
elif MODE != "plain":
    raise SystemExit(f"CELERY_TEST_MODE must be spotgrace, soft, acks_late or plain, got {MODE!r}")

_redis = redis.Redis.from_url(BROKER)


def record(kind: str, tag: str) -> None:
    """Append one JSON record to the Redis list ``kind``."""
    item = {"tag": tag, "pid": os.getpid(), "worker": os.environ.get("CELERY_TEST_WORKER")}
    _redis.rpush(kind, json.dumps({**item, "t": time.time()}))


@app.task
def work(tag: str, seconds: float) -> None:
    """Sleep ``seconds``; record start and finish."""
    record("started", tag)
    time.sleep(seconds)
    record("done", tag)


@app.task
def slow_once(tag: str, first: float, then: float) -> None:
    """``first`` seconds on the first delivery, ``then`` on any later one."""
    attempt = _redis.incr(f"attempt:{tag}")
    record("started", tag)
    time.sleep(first if attempt == 1 else then)
    record("done", tag)


@app.task
def forever(tag: str) -> None:
    """Never returns, and ignores SIGTERM where it can (a pool process)."""
    record("started", tag)
    with contextlib.suppress(ValueError):  # not the main thread (threads pool)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)


@spotgrace.on_shutdown
def note_shutdown() -> None:
    """A cleanup hook: records that hooks ran."""
    record("hooks", "on_shutdown")
