"""gunicorn under spotgrace: the master owns the notice and the budget, every worker follows.

Use it as gunicorn's config (``gunicorn -c python:spotgrace.gunicorn app:app``)
or import it from yours (``from spotgrace.gunicorn import *`` at the top of
``gunicorn.conf.py``; define your own hooks after it and call ours from them).

The sequence, on SIGTERM/SIGINT to the master (or an early-warning notice):

1. **Notice** (in the master's signal handler): readiness turns red in every
   worker at once (a flag in memory the master shares with its workers);
   ``/readyz`` answers 503 everywhere; ``/healthz`` stays 200.
2. **Lame duck** (``drain_delay``): workers keep serving; every response ends
   its connection (``Connection: close``).
3. **Stop intake**: the kernel stops completing new handshakes on the shared
   listeners, the workers empty the accept queue, then the master hands
   gunicorn its SIGTERM; gunicorn's ``graceful_timeout`` is set to what is
   left of the budget (less a reserve for the master's hooks); a request
   still arriving is answered 503 + ``Retry-After``.
4. **Drain**: each worker finishes its requests (gunicorn's own drain), then
   runs the cleanup hooks the app registered in it (``worker_exit``), bounded
   by the workers' deadline.
5. **Cleanup** in the master: hooks registered in the master (e.g. in
   ``gunicorn.conf.py``) run once, bounded by what is left.
6. **Exit** before the deadline (the master's watchdog makes sure); the exit
   code is the policy's (0 by default), or 1 when a worker's shutdown was not
   clean (killed at ``graceful_timeout``, crashed, or its hooks failed).

WSGI apps are wrapped in ``spotgrace.wsgi.GraceMiddleware`` by themselves;
ASGI apps under :class:`spotgrace.gunicorn.workers.UvicornWorker` wrap
themselves in ``spotgrace.asgi.GraceMiddleware(app)``. Options come from the
``SPOTGRACE_*`` environment variables (``SPOTGRACE_STOP_TIMEOUT``,
``SPOTGRACE_DRAIN_DELAY``...). See ``docs/gunicorn.md``.
"""

from __future__ import annotations

import os
from typing import Any

from ._master import Master

__all__ = [
    "keepalive",
    "on_exit",
    "post_fork",
    "post_worker_init",
    "when_ready",
    "worker_exit",
]

#: The one master of this gunicorn process (this module is loaded once, in the master).
_master = Master()

#: Seconds an idle keep-alive connection is kept: more than an ALB's default idle
#: timeout (60 s), so the balancer, not the server, closes an idle connection (a
#: server closing one the balancer is reusing at that moment costs a 502). At
#: shutdown every response ends its connection, so this does not lengthen it.
keepalive = 75


def when_ready(server: Any) -> None:
    """Master, once the listeners are open: take over SIGTERM/SIGINT, start the sequence thread."""
    _master.start(server)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, just forked: leave the master's own hooks to the master."""
    _master.forget_master_hooks()


def post_worker_init(worker: Any) -> None:
    """Worker, app loaded: wrap a WSGI app; SIGTERM/SIGINT wait for the master's word."""
    if not getattr(worker, "spotgrace_asgi", False):
        worker.wsgi = _master.wrap_wsgi(worker.wsgi)
        _master.guard_worker_signals()


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, leaving: run the hooks the app registered in it, within the workers' deadline."""
    _master.worker_exit(os.getpid())


def on_exit(server: Any) -> None:
    """Master, last: run the master's hooks, then exit with a truthful code."""
    _master.exit()
