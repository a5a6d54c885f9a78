"""gunicorn worker classes for ASGI apps under ``spotgrace.gunicorn``.

    gunicorn -c python:spotgrace.gunicorn -k spotgrace.gunicorn.workers.UvicornWorker app:app

with ``app = spotgrace.asgi.GraceMiddleware(your_app)`` (no ``grace=``: it
reads the state the master shares). The worker follows the master: during
its lame duck it keeps serving (the middleware adds ``Connection: close``);
when the master stops intake, it closes its listeners the careful way
``spotgrace.asgi.serve()`` does (connections the kernel already completed are
served, never reset), gives idle keep-alive connections ``idle_grace`` for a
request already on its way, then lets uvicorn finish: in-flight requests,
then the ASGI lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import warnings
from typing import Any

with warnings.catch_warnings():  # uvicorn.workers warns that it moves to another package
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker as _UvicornWorker

import uvicorn
from gunicorn.arbiter import Arbiter

from .._http._prefork import WorkerGrace, current
from .._http._shared import close_idle_connections, close_listeners

__all__ = ["UvicornH11Worker", "UvicornWorker"]

#: Seconds an idle keep-alive connection is left open once intake stops (as ``serve()``).
IDLE_GRACE = 1.0
#: How long a worker holds a SIGTERM that came before the master's notice (a group kill).
_RECHECK = 0.5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield  # the worker handles the signals (below)


class UvicornWorker(_UvicornWorker):
    """uvicorn's gunicorn worker, run under the spotgrace master's shutdown sequence."""

    spotgrace_asgi = True  # spotgrace.gunicorn does not wrap it in the WSGI middleware

    async def _serve(self) -> None:
        grace = current()
        if grace is None:
            raise RuntimeError(
                "spotgrace.gunicorn.workers.UvicornWorker needs spotgrace.gunicorn in "
                "gunicorn's config (-c python:spotgrace.gunicorn)"
            )
        self.config.app = self.wsgi
        config = self.config
        server = _Server(config=config)
        loop = asyncio.get_running_loop()
        term = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_term, grace, term)
        loop.add_signal_handler(signal.SIGQUIT, self._on_quit, server)
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=self.sockets)
        if server.should_exit:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        ticker = asyncio.ensure_future(server.main_loop())  # Date header, heartbeat, max_requests
        stop = asyncio.ensure_future(_wait_stop(grace, term))
        try:
            await asyncio.wait({ticker, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not ticker.done():
                await self._stop_intake(server, grace)
                server.should_exit = True
                await ticker
        finally:
            stop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop
        await server.shutdown(sockets=self.sockets)

    def _on_term(self, grace: WorkerGrace, term: asyncio.Event, *, again: bool = False) -> None:
        # During the master's lame duck a group-wide SIGTERM/SIGINT is the master's to act
        # on; one that comes before the master's notice is looked at again 0.5 s later,
        # time for the master to handle its own copy of a group-wide signal.
        state = grace.state
        if state.noticed and not state.stopping and os.getppid() == self.ppid:
            return
        if not state.noticed and not again:
            loop = asyncio.get_running_loop()
            loop.call_later(_RECHECK, lambda: self._on_term(grace, term, again=True))
            return
        term.set()

    def _on_quit(self, server: uvicorn.Server) -> None:
        server.should_exit = True
        server.force_exit = True

    async def _stop_intake(self, server: uvicorn.Server, grace: WorkerGrace) -> None:
        config, state = server.config, server.server_state

        def protocol() -> asyncio.BaseProtocol:
            factory: Any = config.http_protocol_class
            made: asyncio.BaseProtocol = factory(
                config=config, server_state=state, app_state=server.lifespan.state
            )
            return made

        await close_listeners(server.servers, protocol)

        def close_all() -> None:
            for connection in list(state.connections):
                connection.shutdown()

        await close_idle_connections(
            lambda: state.connections, close_all, grace=IDLE_GRACE, remaining=grace.remaining
        )


class UvicornH11Worker(UvicornWorker):
    """:class:`UvicornWorker` with the pure-Python h11 parser and the asyncio loop."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}  # noqa: RUF012  (uvicorn's own shape)


async def _wait_stop(grace: WorkerGrace, term: asyncio.Event) -> None:
    waiter = asyncio.ensure_future(term.wait())
    stopping = asyncio.ensure_future(grace.wait())
    try:
        await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopping.cancel()
