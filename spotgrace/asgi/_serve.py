"""``serve()``: uvicorn under spotgrace (public in :mod:`spotgrace.asgi`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Mapping
from typing import Any

from .._core._errors import MissingExtraError
from .._graceful._graceful import graceful
from .._http._asgi_exchange import ASGIApp
from .._http._shared import GraceLike, HttpOptions, close_idle_connections, close_listeners
from .._http._takeover import UvicornBook, adopt
from ._middleware import GraceMiddleware

__all__ = ["serve"]


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

    class _Server(uvicorn.Server):
        book: UvicornBook | None = None
        grace: GraceLike | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield  # spotgrace owns the signals

        async def on_tick(self, counter: int) -> bool:
            # uvicorn ticks every 0.1 s anyway: a notice with no request after it
            # (a drain_delay) still marks the requests in flight within a tick.
            if self.book is not None and self.grace is not None:
                self.book.tick(self.grace)
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
        server.book = middleware._take_book(server.server_state, config.http_protocol_class)
        server.grace = grace
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
                book.held = adopt(grace, book.tasks())  # referenced until the process ends
                book.mark_close()
                book.start_ending_event_streams()

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
