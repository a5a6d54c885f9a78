"""``GraceMiddleware`` and ``LifespanGrace`` (public in :mod:`spotgrace.asgi`).

uvicorn is imported only when the middleware finds itself under uvicorn (it is
loaded then): nothing here needs more than spotgrace.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from .._core._eventlog import emit
from .._core._inflight import InflightTracker
from .._http._asgi_exchange import (
    GOING_AWAY,
    ASGIApp,
    Exchange,
    Gate,
    LeanExchange,
    Receive,
    Send,
    plain,
)
from .._http._lifespan import LifespanGrace as _LifespanGrace
from .._http._prefork import current as _prefork_grace
from .._http._shared import (
    UNAVAILABLE_BODY,
    GraceLike,
    HttpOptions,
)
from .._http._takeover import UvicornBook, uvicorn_state_of, uvicorn_unsupported

__all__ = ["GraceMiddleware", "LifespanGrace", "uvicorn_classes"]

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
        # Under uvicorn (found at the first lean request): its bookkeeping, taken over at
        # the notice like serve() does, and the loop it runs in (see _find_uvicorn).
        self._seek_uvicorn = register is not None and type(self) is GraceMiddleware
        self._uvicorn: tuple[UvicornBook, asyncio.AbstractEventLoop] | None = None
        self._uvicorn_state: object = None  # its ServerState: whose requests go straight on
        # The tasks of the requests on the full path now (in flight by their own scope).
        self._full: set[asyncio.Task[Any] | None] = set()
        if register is not None:
            register(self._at_notice, self._gate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The middleware used alone: before the notice a flag check and the probe check."""
        gate = self._gate
        if gate.open and scope["type"] == "http" and scope["path"] not in self._probes:
            if self._seek_uvicorn:
                self._find_uvicorn(send)
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
        if self._uvicorn is not None:  # read after the gate closed: no request goes straight on
            book, loop = self._uvicorn
            # Each of uvicorn's request tasks once: not a lean one (counted above), not
            # one on the full path (it counts itself), not one that has not started (it
            # will find the gate closed: the full path).
            counted, full = set(held.values()), self._full
            tasks = [
                task
                for task in list(book.state.tasks)
                if not task.done() and task not in counted and task not in full and _started(task)
            ]
            for task in tasks:
                tracker.enter(task)
            try:
                loop.call_soon_threadsafe(book.hand_over, tasks, tracker, self.grace)
            except RuntimeError:  # the loop is closed: none of them runs any more
                for task in tasks:
                    tracker.exit(task)

    def _find_uvicorn(self, send: Send) -> None:
        """Once, at the first lean request: under uvicorn, run its HTTP requests as serve() does.

        The app's coroutine is handed straight to uvicorn (no frame, nothing
        listed): this instance becomes an :class:`_OnUvicorn`, whose ``__call__``
        is a plain function (the class was ASGI 3 to the server's own check, an
        ``async def``). At the notice uvicorn's own list of request tasks is
        counted in the drain (:meth:`_at_notice`).
        """
        self._seek_uvicorn = False
        if "uvicorn" not in sys.modules:
            return
        state, off = uvicorn_state_of(send, *uvicorn_classes())
        if off is not None:
            emit("info", "http.takeover_off", server="uvicorn", reason=off)
        if state is not None:  # set before the class is: see _at_notice
            self._uvicorn = (UvicornBook(state), _running_loop())
            self._uvicorn_state = state
            self.__class__ = _OnUvicorn

    def _take_book(self, server_state: Any, protocol_class: type) -> UvicornBook | None:
        """For a uvicorn server spotgrace runs (``serve()``, the gunicorn worker), made and loaded
        with :meth:`_entry` as its app: its bookkeeping, to be marked at the notice, or None
        (logged) when this uvicorn cannot be taken over; then every request takes the full path.
        """
        off = uvicorn_unsupported(protocol_class, *uvicorn_classes())
        if off is not None:
            emit("info", "http.takeover_off", server="uvicorn", reason=off)
            return None
        self._book = UvicornBook(server_state)
        return self._book

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
        async with grace.inflight(), self._on_full_path():
            await Exchange(self.app, grace).run(scope, receive, send)

    # ------------------------------------------------------------- websocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        grace = self.grace
        if grace.stopping:
            # Refuse the handshake: servers answer it with HTTP 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": GOING_AWAY})
            return
        async with grace.inflight(), self._on_full_path():
            await Exchange(self.app, grace, websocket=True).run(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _on_full_path(self) -> AsyncIterator[None]:
        task = _task_of(_running_loop())
        self._full.add(task)
        try:
            yield
        finally:
            self._full.discard(task)


_NOT_HELD: Any = object()


class _OnUvicorn(GraceMiddleware):
    """:class:`GraceMiddleware` used alone under uvicorn, whose bookkeeping it takes at the notice.

    Before the notice an HTTP request of the uvicorn server found first gets
    the app's own coroutine back: the gate, the probe check and whose request
    it is (uvicorn's ``send`` is its request cycle's). Anything else takes the
    middleware's ordinary path.
    """

    def __call__(  # type: ignore[override]
        self, scope: Scope, receive: Receive, send: Send
    ) -> Awaitable[None]:
        if self._gate.open and scope["type"] == "http" and scope["path"] not in self._probes:
            try:
                cycle = send.__self__  # type: ignore[attr-defined]
                ours = cycle.on_response.__self__.server_state is self._uvicorn_state
            except AttributeError:  # not a uvicorn cycle's send, or a cycle already done
                ours = False
            if ours:
                return self.app(scope, receive, send)
        return GraceMiddleware.__call__(self, scope, receive, send)


# uvicorn (and any server) checks that the app is ASGI 3 by its ``__call__`` being a
# coroutine function: a server loaded after the swap must still see one.
if sys.version_info >= (3, 12):
    inspect.markcoroutinefunction(_OnUvicorn.__call__)
else:
    _OnUvicorn.__call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


def _started(task: asyncio.Task[Any]) -> bool:
    """Whether the task's coroutine has begun (one not begun yet reads the gate later)."""
    try:
        return inspect.getcoroutinestate(task.get_coro()) != inspect.CORO_CREATED  # type: ignore[arg-type]
    except (AttributeError, TypeError):  # no coroutine to look at: count it
        return True


def uvicorn_classes() -> tuple[dict[object, type], type]:
    """uvicorn's HTTP protocol classes mapped to their request cycles, and its ServerState."""
    from uvicorn.protocols.http import h11_impl
    from uvicorn.server import ServerState

    cycles: dict[object, type] = {h11_impl.H11Protocol: h11_impl.RequestResponseCycle}
    with contextlib.suppress(ImportError):  # httptools installed (uvicorn[standard]): its default
        from uvicorn.protocols.http import httptools_impl

        cycles[httptools_impl.HttpToolsProtocol] = httptools_impl.RequestResponseCycle
    return cycles, ServerState


def _switch_all(leans: list[LeanExchange]) -> None:
    """In the loop, after the notice: lean requests still running take the full path."""
    for lean in leans:
        if not lean.ended:
            lean.switch()
