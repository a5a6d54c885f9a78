"""gunicorn with one uvicorn worker, for ``bench/instructions.py --groups gunicorn-uvicorn``.

    python bench/gunicorn_asgi.py KIND PORT

``plain``  a bare ASGI app under ``uvicorn.workers.UvicornWorker``
``grace``  the same app in ``spotgrace.asgi.GraceMiddleware(app)`` (no ``grace=``: the
           master's shared state) under ``spotgrace.gunicorn.workers.UvicornWorker``
           with ``-c python:spotgrace.gunicorn`` (docs/gunicorn.md)

One worker, HTTP/1.1 keep-alive, access log off; the master is this process.
``BENCH_MAX_REQUESTS``: the worker exits after that many requests (0: never), so
that callgrind writes its counters (see ``PREFORK`` in bench/instructions.py).
Every request answers ``hello``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"5")]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI app can do (lifespan ignored)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"hello"})


def __getattr__(name: str) -> Any:
    if name == "grace_app":  # made in the worker, where the master's shared state is known
        from spotgrace.asgi import GraceMiddleware

        return GraceMiddleware(bare_app)
    raise AttributeError(name)


def main(kind: str, port: int) -> None:
    """Run gunicorn in this process until it is stopped (SIGTERM)."""
    warnings.simplefilter("ignore", DeprecationWarning)  # uvicorn.workers moves elsewhere
    from gunicorn.app.wsgiapp import run

    sys.path.insert(0, str(ROOT / "bench"))
    argv = ["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    argv += ["--timeout", "900"]  # under callgrind a worker boots in tens of seconds
    argv += ["--max-requests", os.environ.get("BENCH_MAX_REQUESTS", "0")]
    if kind == "plain":
        argv += ["-k", "uvicorn.workers.UvicornWorker", "gunicorn_asgi:bare_app"]
    else:
        argv += ["-c", "python:spotgrace.gunicorn"]
        argv += ["-k", "spotgrace.gunicorn.workers.UvicornWorker", "gunicorn_asgi:grace_app"]
    sys.argv = argv
    run()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain", "grace"):
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]))
