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

from .._core._eventlog import emit
from .._http._prefork import WorkerGrace, current
from .._http._shared import close_idle_connections, close_listeners
from .._http._takeover import UvicornBook

__all__ = ["UvicornH11Worker", "UvicornWorker"]

#: Seconds an idle keep-alive connection is left open once intake stops (as ``serve()``).
IDLE_GRACE = 1.0
#: How long a worker holds a SIGTERM that came before the master's notice (a group kill).
_RECHECK = 0.5
#: The share of the time left at intake stop that uvicorn may wait for its requests.
_REQUESTS_SHARE = 0.5


class _Server(uvicorn.Server):
    book: UvicornBook | None = None
    grace: WorkerGrace | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield  # the worker handles the signals (below)

    async def on_tick(self, counter: int) -> bool:
        if self.book is not None and self.grace is not None:
            self.book.tick(self.grace)  # a notice with no request after it
        return bool(await super().on_tick(counter))


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
        config = self.config
        server = _Server(config=config)
        # spotgrace.asgi.GraceMiddleware (duck-typed: the integrations import each other
        # not): as under serve(), before the notice a request goes straight to the app and
        # uvicorn's own bookkeeping is marked at the notice (uvicorn's shutdown waits for
        # its request tasks: the worker's drain).
        middleware = self.wsgi if _is_grace_middleware(self.wsgi) else None
        if middleware is not None and not config.loaded:
            config.app, config.interface = middleware._entry, "asgi3"
        else:
            middleware = None
            config.app = self.wsgi
        loop = asyncio.get_running_loop()
        term = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_term, grace, term)
        loop.add_signal_handler(signal.SIGQUIT, self._on_quit, server)
        if not config.loaded:
            config.load()
        if middleware is not None:
            server.book = middleware._take_book(server.server_state, config.http_protocol_class)
            server.grace = grace
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
        running = list(server.server_state.tasks)
        await server.shutdown(sockets=self.sockets)
        # uvicorn's graceful timeout (set in _stop_intake) ran out: it cancelled those
        # (its run_asgi takes the CancelledError in: the count of requests tells).
        cancelled = sum(1 for task in running if task.cancelled() or task.cancelling())
        if cancelled:
            grace.unclean = True  # the worker reports a failed exit (worker_exit)
            emit("warning", "worker.requests_cancelled", count=cancelled, pid=os.getpid())

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

    async def _stop_intake(self, server: _Server, grace: WorkerGrace) -> None:
        config, state = server.config, server.server_state
        # uvicorn's shutdown waits for its request tasks: at most half of what is left
        # (then it cancels them), so that the lifespan shutdown and the worker's hooks
        # still run and a request that never ends (an event stream not recognised as
        # one) does not keep the worker until the master's SIGKILL.
        limit = max(0.1, grace.remaining() * _REQUESTS_SHARE)
        if config.timeout_graceful_shutdown is None or config.timeout_graceful_shutdown > limit:
            config.timeout_graceful_shutdown = limit  # type: ignore[assignment]  # a float works

        def protocol() -> asyncio.BaseProtocol:
            factory: Any = config.http_protocol_class
            made: asyncio.BaseProtocol = factory(
                config=config, server_state=state, app_state=server.lifespan.state
            )
            return made

        if server.book is not None:  # event streams begun before the notice
            server.book.start_ending_event_streams()
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


def _is_grace_middleware(app: object) -> bool:
    return type(app).__module__ == "spotgrace.asgi" and hasattr(app, "_take_book")


async def _wait_stop(grace: WorkerGrace, term: asyncio.Event) -> None:
    waiter = asyncio.ensure_future(term.wait())
    stopping = asyncio.ensure_future(grace.wait())
    try:
        await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopping.cancel()
