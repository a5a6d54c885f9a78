"""WSGI (Flask, Django, any WSGI app): probes, ``Connection: close``, 503 after intake, drain.

``GraceMiddleware(app)`` under gunicorn with ``spotgrace.gunicorn`` in its
config (which wraps the app by itself when you have not), or
``GraceMiddleware(app, grace=grace)`` with the ``spotgrace.Grace`` of a
``with spotgrace.graceful() as grace`` block in a single process. It has the
contract of ``spotgrace.asgi.GraceMiddleware``; see ``docs/wsgi.md``.
It imports no server and no framework.
"""

from __future__ import annotations

from typing import Protocol

from ._http._wsgi import GraceMiddleware as _GraceMiddleware
from ._http._wsgi import SyncGraceLike as _SyncGraceLike

__all__ = ["GraceMiddleware", "SyncGraceLike"]


class GraceMiddleware(_GraceMiddleware):
    """Pure WSGI middleware: probes, ``Connection: close``, 503 after intake, in-flight tracking.

    ``GraceMiddleware(app, grace=None, readyz="/readyz", healthz="/healthz",
    retry_after=5)``; ``grace`` left out: the state a pre-fork master
    (``spotgrace.gunicorn``) shares with its workers.
    """


class SyncGraceLike(_SyncGraceLike, Protocol):
    """The part of ``spotgrace.Grace`` the WSGI middleware uses: ``ready``, ``stopping``, ``inflight()``.

    ``stopping`` turns True only after ``ready`` turned False (intake stops after the notice).
    """
