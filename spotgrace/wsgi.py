"""WSGI (Flask, Django, any WSGI app): probes, ``Connection: close``, 503 after intake, drain.

``GraceMiddleware(app)`` under gunicorn with ``spotgrace.gunicorn`` in its
config (which wraps the app by itself when you have not), or
``GraceMiddleware(app, grace=grace)`` with the ``spotgrace.Grace`` of a
``with spotgrace.graceful() as grace`` block in a single process. It has the
contract of ``spotgrace.asgi.GraceMiddleware``; see ``docs/wsgi.md``.
It imports no server and no framework.
"""

from __future__ import annotations

from ._http._wsgi import GraceMiddleware as GraceMiddleware
from ._http._wsgi import SyncGraceLike as SyncGraceLike

__all__ = ["GraceMiddleware", "SyncGraceLike"]
