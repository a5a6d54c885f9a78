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

import asyncio
import contextlib
import importlib.util
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any

from ._core._errors import MissingExtraError
from ._core._eventlog import emit
from ._graceful._graceful import graceful
from ._http._asgi_exchange import (
    GOING_AWAY,
    ASGIApp,
    Exchange,
    LeanExchange,
    Receive,
    Send,
    plain,
)
from ._http._lifespan import LifespanGrace as _LifespanGrace
from ._http._prefork import WorkerGrace as _WorkerGrace
from ._http._prefork import current as _prefork_grace
from ._http._shared import (
    UNAVAILABLE_BODY,
    GraceLike,
    HttpOptions,
    close_idle_connections,
    close_listeners,
)
from ._http._takeover import UvicornBook, adopt, uvicorn_unsupported

__all__ = ["GraceMiddleware", "LifespanGrace", "serve"]

Scope = MutableMapping[str, Any]


class LifespanGrace(_LifespanGrace):
    """spotgrace in the lifespan of a server that owns the process (``uvicorn --workers``).

    ``grace = LifespanGrace()``, ``GraceMiddleware(app, grace=grace)``, and in the
    lifespan ``async with grace.serve(**graceful_options): yield``. The notice and
    the lame duck are spotgrace's; then the signal goes back to the server, which
    stops accepting and ends the lifespan; no ``SystemExit`` is raised there.
    """


class GraceMiddleware:
    """Pure ASGI middleware: probes, ``Connection: close``, 503 after intake, drain, going-away.

    ``grace`` is the :class:`spotgrace.AsyncGrace` of the running process (from
    ``async with spotgrace.graceful() as grace``); left out, the state a pre-fork
    master shares with its workers (``spotgrace.gunicorn``). Scopes other than ``http``
    and ``websocket`` (e.g. ``lifespan``) pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        grace: GraceLike | None = None,
        readyz: str | None = "/readyz",
        healthz: str | None = "/healthz",
        retry_after: int = 5,
    ) -> None:
        self.app = app
        if grace is None and (grace := _prefork_grace()) is None:
            raise TypeError(
                "GraceMiddleware needs grace= (from `async with spotgrace.graceful() as grace`), "
                "or gunicorn with spotgrace.gunicorn in its config"
            )
        self.grace = grace
        self.options = HttpOptions(readyz=readyz, healthz=healthz, retry_after=retry_after)
        self._probes = frozenset(p for p in (self.options.readyz, self.options.healthz) if p)
        # Set by serve() when uvicorn's bookkeeping can be taken over at the notice:
        # until then an HTTP request goes straight to the app.
        self._book: UvicornBook | None = None
        # The lean path of the middleware used alone: not for a gunicorn worker's
        # shared state (its drain counts the worker's own in-flight scopes).
        self._lean = not isinstance(grace, _WorkerGrace)
        # The middleware used alone (not under serve()): the requests that began
        # before the notice, by task, handed to the drain at the notice (_take_over).
        self._live: dict[asyncio.Task[Any], LeanExchange] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._held: list[asyncio.Task[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The middleware used alone: before the notice a flag check and the probe check."""
        if (
            self._lean
            and scope["type"] == "http"
            and self.grace.ready
            and scope["path"] not in self._probes
            and (task := asyncio.current_task()) is not None
        ):
            lean = LeanExchange(self.grace, send, receive)
            live = self._live
            live[task] = lean
            if self._watcher is None:
                self._watcher = asyncio.ensure_future(self._await_notice())
            try:
                await self.app(scope, lean.lean_receive, lean.lean_send)
            finally:
                live.pop(task, None)  # (the same task may enter twice: a nested mount)
                if lean.switched:
                    await lean.stop_watching()
            return
        await self._entry(scope, receive, send)

    async def _await_notice(self) -> None:
        # In steps of a minute: a LifespanGrace outside its serve() cannot be waited on
        # (a step costs about as much as a request; a request after the notice hands over too).
        while not await self.grace.wait(60.0):
            pass
        self._take_over()

    def _take_over(self) -> None:
        """At the notice: the requests that began before it go to the core's drain.

        Each is switched to the full path's behaviour and its task held in flight
        (:func:`spotgrace._http._takeover.adopt`) until it ends. Runs once: from
        the first request after the notice, or when intake closes if none came.
        """
        if self._held is not None:
            return
        live = list(self._live.items())
        for _, lean in live:
            lean.switch()
        self._held = adopt(self.grace, [task for task, _ in live])  # referenced until exit

    def _entry(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The app :func:`serve` gives uvicorn (as ``asgi3``): a plain function, no frame of its own.

        Under :func:`serve`, before the notice, an HTTP request gets the app's own
        coroutine straight back, so spotgrace runs no coroutine frame for it.
        """
        if (
            self._book is not None
            and scope["type"] == "http"
            and scope["path"] not in self._probes
            and self.grace.ready
        ):
            return self.app(scope, receive, send)
        return self._slow(scope, receive, send)

    def _slow(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The full path: the coroutine that serves this scope (none of its own frame)."""
        kind = scope["type"]
        if kind == "http":
            book = self._book
            if book is not None and not book.marked and not self.grace.ready:
                book.mark_close()  # the first request after the notice
            elif self._held is None and self._watcher is not None and not self.grace.ready:
                self._take_over()  # the middleware used alone: the first request after it
            return self._http(scope, receive, send)
        if kind == "websocket":
            return self._websocket(scope, receive, send)
        return self.app(scope, receive, send)

    # ------------------------------------------------------------------ http

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        grace, options = self.grace, self.options
        path = scope.get("path", "")
        if path == options.readyz:
            ready = grace.ready
            await plain(send, 200 if ready else 503, b"ok\n" if ready else b"draining\n", grace)
            return
        if path == options.healthz:
            await plain(send, 200, b"ok\n", grace)
            return
        if grace.stopping:
            retry = (b"retry-after", str(options.retry_after).encode())
            await plain(send, 503, UNAVAILABLE_BODY, grace, extra=[retry])
            return
        async with grace.inflight():
            await Exchange(self.app, grace).run(scope, receive, send)

    # ------------------------------------------------------------- websocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        grace = self.grace
        if grace.stopping:
            # Refuse the handshake: servers answer it with HTTP 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": GOING_AWAY})
            return
        async with grace.inflight():
            await Exchange(self.app, grace, websocket=True).run(scope, receive, send)


# ---------------------------------------------------------------------- serve


def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    readyz: str | None = "/readyz",
    healthz: str | None = "/healthz",
    retry_after: int = 5,
    idle_grace: float = 1.0,
    log_level: str | None = "info",
    uvicorn_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` with uvicorn under spotgrace until an interruption; then shut down cleanly.

    ``app`` is wrapped in :class:`GraceMiddleware`. ``options`` are
    :func:`spotgrace.graceful` options (``stop_timeout``, ``drain_delay``...);
    ``uvicorn_options`` are passed to ``uvicorn.Config`` (its ``host``,
    ``port``, ``log_level``, ``interface`` and signal handling are spotgrace's). After a
    signal, this raises ``SystemExit`` with the exit policy's code (by
    default the verdict: 0 when clean, 70 when not).
    """
    if importlib.util.find_spec("uvicorn") is None:
        raise MissingExtraError("spotgrace.asgi.serve()", "asgi", "uvicorn")
    http = HttpOptions(
        readyz=readyz, healthz=healthz, retry_after=retry_after, idle_grace=idle_grace
    )
    asyncio.run(_serve(app, host, port, http, log_level, dict(uvicorn_options or {}), options))


async def _serve(
    app: ASGIApp,
    host: str,
    port: int,
    http: HttpOptions,
    log_level: str | None,
    uvicorn_options: dict[str, Any],
    options: dict[str, Any],
) -> None:
    import uvicorn
    from uvicorn.protocols.http import h11_impl
    from uvicorn.server import ServerState

    cycles: dict[object, type] = {h11_impl.H11Protocol: h11_impl.RequestResponseCycle}
    with contextlib.suppress(ImportError):  # httptools installed (uvicorn[standard]): its default
        from uvicorn.protocols.http import httptools_impl

        cycles[httptools_impl.HttpToolsProtocol] = httptools_impl.RequestResponseCycle

    class _Server(uvicorn.Server):
        book: UvicornBook | None = None
        grace: GraceLike | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield  # spotgrace owns the signals

        async def on_tick(self, counter: int) -> bool:
            # uvicorn ticks every 0.1 s anyway: a notice with no request after it
            # (a drain_delay) still marks the requests in flight within a tick.
            book, grace = self.book, self.grace
            if book is not None and grace is not None and not book.marked and not grace.ready:
                book.mark_close()
            return bool(await super().on_tick(counter))

    async with graceful(**options) as grace:
        middleware = GraceMiddleware(
            app, grace=grace, readyz=http.readyz, healthz=http.healthz, retry_after=http.retry_after
        )
        # The middleware's plain-function entry: uvicorn would take a plain function
        # for ASGI 2, so the interface is said (the middleware is ASGI 3 whatever the app).
        uvicorn_options["interface"] = "asgi3"
        config = uvicorn.Config(
            middleware._entry, host=host, port=port, log_level=log_level, **uvicorn_options
        )
        server = _Server(config)
        config.load()
        off = uvicorn_unsupported(config.http_protocol_class, cycles, ServerState)
        if off is None:
            server.book = middleware._book = UvicornBook(server.server_state)
            middleware._lean = False  # uvicorn is given _entry; never __call__
            server.grace = grace
        else:
            emit("info", "http.takeover_off", server="uvicorn", reason=off)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        if server.should_exit:  # the lifespan startup failed and uvicorn asked to stop
            return

        @grace.on_shutdown(name="asgi.lifespan")
        async def _lifespan_shutdown() -> None:
            await server.lifespan.shutdown()

        ticker = asyncio.create_task(server.main_loop())  # uvicorn's Date header, once a second
        try:
            await grace.wait()
            state = server.server_state
            book = server.book
            if book is not None:
                book.mark_close()
                book.held = adopt(grace, book.tasks())  # referenced until the process ends
                await book.end_event_streams()

            def _protocol() -> asyncio.BaseProtocol:
                factory: Any = config.http_protocol_class
                protocol: asyncio.BaseProtocol = factory(
                    config=config, server_state=state, app_state=server.lifespan.state
                )
                return protocol

            # Stop intake: new connections are refused; queued ones are still served.
            await close_listeners(server.servers, _protocol)

            def _close_all() -> None:
                for connection in list(state.connections):
                    connection.shutdown()  # idle: closed now; busy: closed after the response

            await close_idle_connections(
                lambda: state.connections,
                _close_all,
                grace=http.idle_grace,
                remaining=grace.remaining,
            )
        finally:
            server.should_exit = True
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
