"""aiohttp: ``run_app()`` (a drop-in for ``web.run_app``) and ``setup()`` for your own runner.

:func:`setup` wires an :class:`aiohttp.web.Application` to a
:class:`spotgrace.AsyncGrace`:

- ``/readyz`` answers 200 while serving and 503 from the moment the notice
  arrives; ``/healthz`` answers 200 until exit (configurable; ``None`` = off);
- from the notice on, every response (streamed ones too) carries
  ``Connection: close``, so each keep-alive connection ends cleanly after
  its current request;
- once intake is closed (``grace.stopping``), new requests are answered 503
  with ``Connection: close`` and ``Retry-After``, never reset;
- each request is in flight (``grace.inflight()``) while its handler runs;
- open WebSockets are closed with code 1001 (going away) when intake closes.

:func:`run_app` runs the app under ``spotgrace.graceful()`` instead of
aiohttp's own signal handling: it closes the listener when intake stops, lets
idle keep-alive connections go without racing a request on its way, drains,
then runs aiohttp's own shutdown (``on_shutdown``, connection shutdown,
``on_cleanup``) as a hook inside the budget. It needs no middleware: before
the notice a request costs one flag check and a prefix check of its path;
when intake closes, the requests in flight are taken from aiohttp's own
bookkeeping (the connections inside a handler, :mod:`spotgrace._http._takeover`)
and held in flight until they end; requests that start after the notice take
the full path (probes, 503 once intake is closed, in flight).

aiohttp is imported only here, never by ``import spotgrace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, cast

from ._core._errors import MissingExtraError

try:
    from aiohttp import WSCloseCode, web
    from aiohttp.typedefs import Handler, Middleware
    from aiohttp.web_protocol import RequestHandler
    from yarl import URL
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise MissingExtraError("spotgrace.aiohttp", "aiohttp", exc.name) from exc

from ._core._eventlog import emit
from ._graceful._graceful import graceful
from ._http._shared import (
    UNAVAILABLE_BODY,
    GraceLike,
    HttpOptions,
    close_idle_connections,
    close_listeners,
    readiness,
)
from ._http._takeover import adopt, aiohttp_busy_tasks, aiohttp_unsupported

__all__ = ["grace_middleware", "run_app", "setup"]


def grace_middleware(
    grace: GraceLike,
    *,
    readyz: str | None = "/readyz",
    healthz: str | None = "/healthz",
    retry_after: int = 5,
) -> Middleware:
    """The aiohttp middleware alone: probes, 503 after intake, in-flight tracking.

    It marks responses it returns with ``Connection: close`` once the notice
    has come; responses a handler streams itself (``StreamResponse.prepare``)
    and WebSockets need :func:`setup`, which also adds this middleware.
    """
    options = HttpOptions(readyz=readyz, healthz=healthz, retry_after=retry_after)

    @web.middleware
    async def spotgrace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _full_path(grace, options, request, handler)

    return spotgrace_middleware


async def _full_path(
    grace: GraceLike, options: HttpOptions, request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Probes, 503 once intake is closed, the request in flight, ``Connection: close``."""
    path = request.path
    response: web.StreamResponse
    if path == options.readyz:
        ready = grace.ready
        response = _plain(200 if ready else 503, b"ok\n" if ready else b"draining\n")
    elif path == options.healthz:
        response = _plain(200, b"ok\n")
    elif grace.stopping:
        response = _plain(503, UNAVAILABLE_BODY)
        response.headers["Retry-After"] = str(options.retry_after)
    else:
        async with grace.inflight():
            response = await handler(request)
    if not grace.ready and not response.prepared:
        _mark_close(response)
    return response


_ServerHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _fast_handler(grace: GraceLike, options: HttpOptions, inner: _ServerHandler) -> _ServerHandler:
    """The server's request handler for :func:`run_app`: straight to the app until the notice.

    A plain function, not a coroutine: before the notice it returns the app's own
    coroutine, so a request runs no frame of spotgrace's.
    """
    app_handler = cast("Handler", inner)  # the app's handler takes the app's web.Request
    if not hasattr(URL, "path_safe"):  # yarl < 1.12
        return _raw_path_handler(grace, options, inner, app_handler)
    probes = frozenset(p for p in (options.readyz, options.healthz) if p)
    state = readiness(grace)

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        # What the router reads (cached on the request, so it costs the router nothing
        # more): the path decoded but for %2F and %25. With neither, it is
        # ``request.path``, which the full path compares with the probes.
        path = request.rel_url.path_safe
        if state.ready and path not in probes and "%" not in path:
            return inner(request)
        return _full_path(grace, options, cast("web.Request", request), app_handler)

    return handle


def _raw_path_handler(
    grace: GraceLike, options: HttpOptions, inner: _ServerHandler, app_handler: Handler
) -> _ServerHandler:
    """:func:`_fast_handler` on a yarl without ``URL.path_safe``: checks the raw target."""
    probes = tuple(p for p in (options.readyz, options.healthz) if p)
    # A percent-encoded probe (``/ready%7A``) is a probe too (``request.path`` is
    # decoded): its raw form is at most three times as long, so a ``%`` is there.
    # So is an absolute-form target (``GET http://host/readyz``): it has no leading ``/``.
    encoded = 3 * max(map(len, probes), default=0)
    state = readiness(grace)

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        raw = request.raw_path
        if (
            state.ready
            and raw[:1] == "/"
            and not raw.startswith(probes)
            and "%" not in raw[:encoded]
        ):
            return inner(request)
        return _full_path(grace, options, cast("web.Request", request), app_handler)

    return handle


def _request_class(grace: GraceLike, websockets: weakref.WeakSet[web.WebSocketResponse]) -> type:
    """A ``web.Request`` whose prepare hook does what ``on_response_prepare`` did, cheaper.

    Every response passes it when it is prepared (returned or streamed): a
    WebSocket is remembered (closed with 1001 when intake closes); from the
    notice on, any other response gets ``Connection: close``. It runs no frame of
    its own beyond this function call: aiohttp's own hook (the app's
    ``on_response_prepare`` receivers) is returned for aiohttp to await.
    """
    base_hook = web.Request._prepare_hook
    websocket_class, response_class = web.WebSocketResponse, web.Response
    state = readiness(grace)

    class GraceRequest(web.Request):
        def _prepare_hook(self, response: web.StreamResponse) -> Coroutine[Any, Any, None]:
            # Not isinstance(): StreamResponse is an ABC, and ABCMeta's check runs Python
            # code. The common case, a web.Response, is never a WebSocket.
            cls = type(response)
            if cls is not response_class and websocket_class in cls.__mro__:
                websockets.add(cast("web.WebSocketResponse", response))
            elif not state.ready:
                _mark_close(response)
            return base_hook(self, response)

    return GraceRequest


def _request_factory(app: web.Application, cls: type) -> Callable[..., web.Request]:
    """``app._make_request`` making ``cls`` requests, called as aiohttp calls its own.

    Its function with ``_cls=cls`` for its default, bound to ``app``: a
    ``functools.partial`` with the keyword would merge it per request.
    """
    bound = app._make_request  # what aiohttp's Server is given: an override on the app wins
    make = bound.__func__ if isinstance(bound, types.MethodType) and bound.__self__ is app else None
    if isinstance(make, types.FunctionType) and make.__defaults__ == (web.Request,):
        names = list(inspect.signature(make).parameters)
        if names[-1:] == ["_cls"]:
            function = types.FunctionType(
                make.__code__, make.__globals__, make.__name__, (cls,), make.__closure__
            )
            function.__kwdefaults__ = make.__kwdefaults__
            return cast("Callable[..., web.Request]", types.MethodType(function, app))
    return functools.partial(app._make_request, _cls=cls)


def _plain(status: int, body: bytes) -> web.Response:
    response = web.Response(status=status, body=body, content_type="text/plain", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def _mark_close(response: web.StreamResponse) -> None:
    if response.status != 101:
        response.force_close()
        response.headers["Connection"] = "close"


def setup(
    app: web.Application,
    grace: GraceLike,
    *,
    readyz: str | None = "/readyz",
    healthz: str | None = "/healthz",
    retry_after: int = 5,
) -> None:
    """Wire ``app`` to ``grace``; call before the app starts (it is frozen then).

    Every request passes the middleware (:func:`grace_middleware`) and is in
    flight while its handler runs; :func:`run_app` does without it until the notice.
    """
    app.middlewares.insert(
        0, grace_middleware(grace, readyz=readyz, healthz=healthz, retry_after=retry_after)
    )
    _hooks(app, grace)


def _hooks(app: web.Application, grace: GraceLike) -> None:
    """``Connection: close`` on every response prepared after the notice; WebSockets 1001."""
    websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse):
            websockets.add(response)
        elif not grace.ready:
            _mark_close(response)

    app.on_response_prepare.append(on_prepare)
    _close_websockets_at_intake(app, grace, websockets)


def _close_websockets_at_intake(
    app: web.Application, grace: GraceLike, websockets: weakref.WeakSet[web.WebSocketResponse]
) -> None:
    """When intake closes, close the open WebSockets with 1001 (going away)."""

    async def close_websockets() -> None:
        await grace.wait()
        # Together: each close waits for the peer's close frame (at most the ws timeout).
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down")
                for ws in list(websockets)
                if not ws.closed
            ),
            return_exceptions=True,
        )

    async def watch(app: web.Application) -> Any:
        task = asyncio.create_task(close_websockets())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watch)


def run_app(
    app: web.Application,
    *,
    host: str | None = None,
    port: int = 8080,
    readyz: str | None = "/readyz",
    healthz: str | None = "/healthz",
    retry_after: int = 5,
    idle_grace: float = 1.0,
    runner_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` until an interruption, then shut down cleanly (replaces ``web.run_app``).

    ``host=None`` listens on every interface, as ``web.run_app`` does.
    ``options`` are :func:`spotgrace.graceful` options (``stop_timeout``,
    ``drain_delay``...); ``runner_options`` go to ``web.AppRunner``
    (``access_log``, ``keepalive_timeout``...). After a signal, this raises
    ``SystemExit`` with the exit policy's code (by default the verdict: 0
    when clean, 70 when not).
    """
    http = HttpOptions(
        readyz=readyz, healthz=healthz, retry_after=retry_after, idle_grace=idle_grace
    )
    asyncio.run(_run(app, host, port, http, dict(runner_options or {}), options))


async def _run(
    app: web.Application,
    host: str | None,
    port: int,
    http: HttpOptions,
    runner_options: dict[str, Any],
    options: dict[str, Any],
) -> None:
    async with graceful(**options) as grace:
        off = aiohttp_unsupported(RequestHandler, web.Server, web.Application, web.Request)
        websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        if off is None:
            _close_websockets_at_intake(app, grace, websockets)
        else:  # the full path for every request, through the middleware
            emit("info", "http.takeover_off", server="aiohttp", reason=off)
            setup(
                app, grace, readyz=http.readyz, healthz=http.healthz, retry_after=http.retry_after
            )
        runner = web.AppRunner(app, handle_signals=False, **runner_options)
        await runner.setup()  # on_startup, cleanup_ctx
        if off is None and runner.server is not None:
            # Before any connection exists: each one takes the handler when it is made.
            runner.server.request_handler = _fast_handler(
                grace, http, runner.server.request_handler
            )
            # Instead of an on_response_prepare receiver (aiohttp awaits a signal for each):
            # Request._prepare_hook; ``_cls`` is Application._make_request's own parameter.
            runner.server.request_factory = _request_factory(app, _request_class(grace, websockets))
        # aiohttp's own shutdown (on_shutdown, connections, on_cleanup) as a hook in the budget.
        grace.on_shutdown(name="aiohttp.cleanup")(runner.cleanup)
        site = web.TCPSite(runner, host, port)
        await site.start()
        await grace.wait()
        server = runner.server
        if server is None:  # pragma: no cover - setup() succeeded above
            return
        held: list[asyncio.Task[None]] = []  # the holders, referenced until the drain is over
        if off is None:  # the requests that began before the notice and still run
            held.extend(adopt(grace, aiohttp_busy_tasks(server.connections)))
        # Stop intake: new connections are refused; queued ones are still served.
        # The asyncio server: aiohttp has no public name for it.
        listener = cast("asyncio.Server | None", site._server)
        await close_listeners([listener] if listener is not None else [], server)
        await site.stop()

        def _close_all() -> None:
            for handler in server.connections:
                handler.close()  # idle: closed now; busy: closed after the response

        await close_idle_connections(
            lambda: server.connections, _close_all, grace=http.idle_grace, remaining=grace.remaining
        )
