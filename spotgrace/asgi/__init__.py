"""ASGI: a pure middleware for any server, and ``serve()`` to run uvicorn under spotgrace.

``GraceMiddleware(app, grace=grace)`` works under any ASGI server (uvicorn,
hypercorn, granian...) given an :class:`spotgrace.AsyncGrace`:

- ``/readyz`` answers 200 while serving and 503 from the moment the notice
  arrives; ``/healthz`` answers 200 until exit (both configurable, ``None``
  turns one off);
- from the notice on, every response carries ``Connection: close``, so each
  keep-alive connection ends cleanly after its current request;
- once intake is closed (``grace.stopping``), new requests are answered 503
  with ``Connection: close`` and ``Retry-After``, never reset;
- every request is in flight (``grace.inflight()``) while the app handles it,
  so the drain waits for it (a request begun before the notice: from the notice
  on, handed over by :func:`serve` or by the middleware itself, see docs/asgi.md);
- long-lived connections get a clean going-away close when intake closes:
  a WebSocket is closed with code 1001, a ``text/event-stream`` response
  is ended (its body terminated) and the app sees ``http.disconnect``.

``serve(app, host=..., port=...)`` runs uvicorn with its own signal handling
off: spotgrace owns SIGTERM/SIGINT, closes the listener when intake stops,
lets idle keep-alive connections go without racing a request on its way, drains,
then runs the ASGI lifespan shutdown as a hook inside the budget. FastAPI and
Starlette apps work unchanged. Under :func:`serve` a request costs nothing
before the notice beyond a flag check and a prefix check of the path: at the
notice the requests in flight are taken from uvicorn's own bookkeeping
(:mod:`spotgrace._http._takeover`), marked ``Connection: close`` and held in
flight until they end; requests that start after the notice take the full path.

uvicorn is imported only by :func:`serve`, so the middleware needs nothing
but spotgrace; :func:`serve` without uvicorn raises an ``ImportError`` naming
the extra (``spotgrace[asgi]``) when it is called, before any event loop runs.
"""

from __future__ import annotations

from ._middleware import GraceMiddleware, LifespanGrace
from ._serve import serve

__all__ = ["GraceMiddleware", "LifespanGrace", "serve"]

for _public in (GraceMiddleware, LifespanGrace, serve):
    _public.__module__ = __name__  # where users find them (docs, reprs)
del _public
