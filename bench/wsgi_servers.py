"""The WSGI servers ``bench/instructions.py --groups wsgi gunicorn`` compares, one per ``kind``.

    python bench/wsgi_servers.py KIND PORT

One process (waitress with two task threads, HTTP/1.1 keep-alive; werkzeug's
server and ``wsgiref`` close every connection), the app plain or in ``spotgrace.wsgi.GraceMiddleware(app,
grace=grace)`` inside ``spotgrace.graceful()`` (``docs/wsgi.md``, "In one process"):

``plain-bare``        a bare WSGI app (one list of bytes, ``Content-Length``)
``grace-bare``        the same app in the middleware
``plain-flask``       ``examples/flask_app.py``'s Flask app
``grace-flask``       the same app in the middleware

gunicorn, one sync worker (no keep-alive: one connection per request), run in
this process (``gunicorn.app.wsgiapp``), so the master is this process and the
worker its forked child (callgrind follows a fork without ``--trace-children``):

``gunicorn-plain-bare`` / ``gunicorn-grace-bare``    the bare app, gunicorn's own config
                                                      / ``-c python:spotgrace.gunicorn``
``gunicorn-plain-flask`` / ``gunicorn-grace-flask``  ``examples/flask_app.py`` the same way

Every app answers ``GET /hello`` with ``hello``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

KINDS = (
    "plain-bare",
    "grace-bare",
    "plain-flask",
    "grace-flask",
    "gunicorn-plain-bare",
    "gunicorn-grace-bare",
    "gunicorn-plain-flask",
    "gunicorn-grace-flask",
)

_BODY = b"hello"
_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(_BODY)))]


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The least a WSGI app can do: one status, two headers, one chunk."""
    start_response("200 OK", _HEADERS)
    return [_BODY]


def flask_app() -> Any:
    """``examples/flask_app.py``'s app."""
    sys.path.insert(0, str(ROOT / "examples"))
    import flask_app as module  # type: ignore[import-not-found]

    return module.app


def serve_waitress(app: Any, port: int) -> None:
    """Serve ``app`` in this process: waitress, HTTP/1.1 keep-alive.

    Two task threads: with one, the next request often comes before the thread is
    idle again and waitress logs a queue-depth warning for it.
    """
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=port, threads=2, ident="waitress")
    grace = getattr(app, "grace", None)
    if grace is not None:  # docs/wsgi.md: once intake must stop, stop the server

        def stop() -> None:
            grace.wait()
            server.close()
            server.task_dispatcher.shutdown()

        threading.Thread(target=stop, daemon=True).start()
    try:
        server.run()
    except OSError:  # its socket closed from the thread above, under its select()
        if grace is None or not grace.stopping:
            raise


def serve_gunicorn(app: str, port: int, grace: bool) -> None:
    """gunicorn with one sync worker in this process (the master), ``app`` as ``module:name``."""
    from gunicorn.app.wsgiapp import run

    argv = ["gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}"]
    # Under callgrind a worker boots in tens of seconds: no timeout may kill it meanwhile.
    argv += ["--timeout", "900", "--log-level", "warning"]
    # bench/instructions.py: the worker exits after this many requests (callgrind then
    # writes its counters); gunicorn starts a new one, which is left unused.
    argv += ["--max-requests", os.environ.get("BENCH_MAX_REQUESTS", "0")]
    if grace:
        argv += ["-c", "python:spotgrace.gunicorn"]
    sys.argv = [*argv, app]
    run()


def main(kind: str, port: int) -> None:
    """Run one server until it is stopped (SIGTERM)."""
    if kind.startswith("gunicorn-"):
        _, side, name = kind.split("-")
        if name == "flask":
            sys.path.insert(0, str(ROOT / "examples"))
            target = "flask_app:app"
        else:
            sys.path.insert(0, str(ROOT / "bench"))
            target = "wsgi_servers:bare_app"
        serve_gunicorn(target, port, side == "grace")
        return
    side, name = kind.split("-")
    app = bare_app if name == "bare" else flask_app()
    if side == "plain":
        serve_waitress(app, port)
        return
    import spotgrace
    from spotgrace.wsgi import GraceMiddleware

    with spotgrace.graceful(drain_delay=0) as grace:
        serve_waitress(GraceMiddleware(app, grace=grace), port)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        raise SystemExit(f"usage: python bench/wsgi_servers.py {{{'|'.join(KINDS)}}} PORT")
    main(sys.argv[1], int(sys.argv[2]))
