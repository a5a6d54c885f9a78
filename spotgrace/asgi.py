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
import types
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ._core._errors import MissingExtraError
from ._core._eventlog import emit
from ._core._inflight import InflightTracker
from ._graceful._graceful import graceful
from ._http._asgi_exchange import (
    GOING_AWAY,
    ASGIApp,
    Exchange,
    Gate,
    LeanExchange,
    Receive,
    Send,
    plain,
)
from ._http._lifespan import LifespanGrace as _LifespanGrace
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

#: ``_task_of(_running_loop())`` is ``asyncio.current_task()`` without its Python
#: frame on 3.11 (there it is a function around this dict; in C from 3.12 on).
_running_loop = asyncio.get_running_loop
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
_task_of: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    _current_tasks.get
    if isinstance(_current_tasks, dict)
    and not isinstance(asyncio.current_task, types.BuiltinFunctionType)
    else asyncio.current_task
)

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
        # The middleware used alone (not under serve()): before the notice a request
        # costs a flag and a probe check, and is only listed in _live; at the notice,
        # in the thread that takes it, those still running are counted in the drain
        # (_at_notice). Not for a gunicorn worker's shared state: no notice listener.
        register = getattr(grace, "_on_notice", None)
        self._gate = Gate(grace, lean=register is not None)
        self._live: dict[LeanExchange, asyncio.Task[Any] | None] = {}
        # The lean requests counted at the notice and not yet ended (see _release).
        self._held: dict[LeanExchange, asyncio.Task[Any] | None] = {}
        self._tracker: InflightTracker | None = None
        if register is not None:
            register(self._at_notice, self._gate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The middleware used alone: before the notice a flag check and the probe check."""
        gate = self._gate
        if gate.open and scope["type"] == "http" and scope["path"] not in self._probes:
            lean = LeanExchange(gate, send, receive)
            live = self._live
            live[lean] = _task_of(_running_loop())  # listed before the gate is read again:
            if gate.open:  # a notice from now on sees it (_at_notice closes, then lists)
                try:
                    await self.app(scope, lean.lean_receive, lean.lean_send)
                finally:
                    del live[lean]
                    lean.ended = True  # before _held is read: see _at_notice
                    if self._held:
                        self._release(lean)
                    if lean.switched:
                        await lean.stop_watching()
                return
            # Closed meanwhile by another thread, which may have counted it: leave once.
            del live[lean]  # type: ignore[unreachable]
            lean.ended = True
            if self._held:
                self._release(lean)
        await self._entry(scope, receive, send)

    def _at_notice(self, tracker: InflightTracker) -> None:
        """At the notice, in the thread that takes it: count the lean requests in flight.

        Each request still running is entered in the tracker before the
        coordinator's ``begin()`` returns, so no drain can miss it, and leaves
        it exactly once: the request's own exit or this function, whichever
        sees the other's mark (``ended`` is set before ``_held`` is read there,
        and ``_held`` is filled before ``ended`` is read here). Then, in the
        loop, each is switched to the full path (``Connection: close``, an
        event stream under way ended when intake closes).
        """
        self._tracker = tracker
        self._gate.open = False  # before the list is read: a request after it takes the full path
        held = self._held
        by_loop: dict[asyncio.AbstractEventLoop, list[LeanExchange]] = {}
        for lean, task in list(self._live.items()):
            tracker.enter(task)
            held[lean] = task
            if lean.ended:
                self._release(lean)
            elif task is not None:
                by_loop.setdefault(task.get_loop(), []).append(lean)
        for loop, leans in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to switch
                loop.call_soon_threadsafe(_switch_all, leans)

    def _release(self, lean: LeanExchange) -> None:
        task = self._held.pop(lean, _NOT_HELD)  # (a request outside a task is held as None)
        if task is not _NOT_HELD and self._tracker is not None:
            self._tracker.exit(task)

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


_NOT_HELD: Any = object()


def _switch_all(leans: list[LeanExchange]) -> None:
    """In the loop, after the notice: lean requests still running take the full path."""
    for lean in leans:
        if not lean.ended:
            lean.switch()


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
