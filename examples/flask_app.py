"""Flask under gunicorn with spotgrace: no request lost on SIGTERM, hooks run in each worker.

    gunicorn -c examples/gunicorn.conf.py --chdir examples flask_app:app

The app is plain Flask: ``spotgrace.gunicorn`` (in ``gunicorn.conf.py``)
wraps it in ``spotgrace.wsgi.GraceMiddleware`` in every worker, which answers
``/readyz`` (503 from the notice on) and ``/healthz``. A hook registered here,
while the app loads in a worker, runs in that worker when it exits.

Without gunicorn (one process, for trying it out), wrap it yourself:
``GraceMiddleware(app, grace=grace)`` inside ``with spotgrace.graceful() as grace``.
"""

from __future__ import annotations

import os
import time

from flask import Flask, request

import spotgrace

app = Flask(__name__)


@app.get("/work")
def work() -> str:
    """Sleep ``ms`` milliseconds, then answer ``ok``."""
    time.sleep(int(request.args.get("ms", "0")) / 1000)
    return "ok"


@app.post("/echo")
def echo() -> bytes:
    """Answer the request body."""
    return request.get_data()


@app.get("/hello")
def hello() -> str:
    """A cheap answer."""
    return "hello"


@spotgrace.on_shutdown(timeout=2)
def close_pool() -> None:
    """Per worker: close what this worker opened (a database pool, say)."""
    print(f"flask worker {os.getpid()}: pool closed", flush=True)
