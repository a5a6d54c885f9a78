"""gunicorn's config with spotgrace: one import gives gunicorn the whole shutdown sequence.

    SPOTGRACE_STOP_TIMEOUT=30 SPOTGRACE_DRAIN_DELAY=12 \
        gunicorn -c examples/gunicorn.conf.py --chdir examples flask_app:app

``SPOTGRACE_STOP_TIMEOUT`` is the task's ``stopTimeout``; ``SPOTGRACE_DRAIN_DELAY``
must exceed the load balancer's health-check interval x unhealthy threshold
(``docs/gunicorn.md``). gunicorn's ``graceful_timeout`` is derived from them:
do not set it here. Define your own gunicorn hooks after the import and call
ours from them (``spotgrace.gunicorn.when_ready(server)``, ...).
"""

import os

import spotgrace
from spotgrace.gunicorn import *  # noqa: F403  (when_ready, post_fork, ..., keepalive)

bind = os.environ.get("BIND", "127.0.0.1:8000")  # 0.0.0.0:8000 in a container
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# sync; gthread (with threads = N); "spotgrace.gunicorn.workers.UvicornWorker" (ASGI, FastAPI)
worker_class = os.environ.get("WORKER_CLASS", "sync")


@spotgrace.on_shutdown(timeout=2)
def master_cleanup() -> None:
    """Registered here, in the master: runs once, in the master, after the workers are gone."""
    print(f"gunicorn master {os.getpid()}: cleanup done", flush=True)
