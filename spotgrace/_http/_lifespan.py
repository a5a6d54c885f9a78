"""``LifespanGrace``: spotgrace inside the ASGI lifespan of a server that owns the process.

When the server runs the app (``uvicorn --workers N``, uvicorn's own gunicorn
worker; tested with ``uvicorn --workers``), the server, not spotgrace, decides when the
process ends. ``graceful()`` entered in the lifespan then must neither raise
``SystemExit`` there (the server would log "Application shutdown failed") nor
keep the server's listener open while answering 503 until the watchdog fires.
So, in the lifespan:

- spotgrace takes SIGTERM/SIGINT (readiness red at once, the lame duck with
  ``Connection: close``);
- when intake must stop, the server's own handlers are put back and the
  signal is raised again: the server stops accepting, finishes its requests
  and ends the lifespan, which runs the drain and the hooks;
- the block then returns (``exit_code="return"``): the server exits by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._core._inflight import InflightTracker
from .._graceful._graceful import AsyncGrace, graceful

__all__ = ["LifespanGrace"]

_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class LifespanGrace:
    """A grace for ``GraceMiddleware`` that is entered later, in the app's lifespan.

    ``grace = LifespanGrace()``; ``app = GraceMiddleware(app, grace=grace)``; in
    the lifespan ``async with grace.serve(**graceful_options): yield``. Before
    ``serve()`` is entered it is ready and not stopping.
    """

    def __init__(self) -> None:
        self._grace: AsyncGrace | None = None
        self._listeners: list[tuple[Callable[[InflightTracker], None], Any]] = []

    @property
    def ready(self) -> bool:
        """Readiness: False from the notice on."""
        return self._grace.ready if self._grace is not None else True

    @property
    def stopping(self) -> bool:
        """True once intake must stop."""
        return self._grace.stopping if self._grace is not None else False

    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` outside ``serve()``)."""
        return self._grace.remaining() if self._grace is not None else math.inf

    def inflight(self) -> AbstractAsyncContextManager[Any]:
        """Count a request as in flight (a no-op outside ``serve()``)."""
        if self._grace is not None:
            return self._grace.inflight()
        return contextlib.nullcontext()

    def _on_notice(self, listener: Callable[[InflightTracker], None], gate: Any = None) -> None:
        # For GraceMiddleware: kept for each serve() (see Coordinator.on_notice).
        self._listeners.append((listener, gate))
        if self._grace is not None:
            self._grace._on_notice(listener, gate)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until intake must stop; False if ``timeout`` passed first."""
        if self._grace is not None:
            return await self._grace.wait(timeout)
        if timeout is None:
            await asyncio.Event().wait()
        await asyncio.sleep(timeout or 0)
        return False

    @contextlib.asynccontextmanager
    async def serve(self, **options: Any) -> AsyncIterator[AsyncGrace]:
        """Enter ``spotgrace.graceful(**options)`` for the lifespan (see the module docstring).

        ``exit_code`` is always ``"return"`` here: the server ends the process.
        """
        if "exit_code" in options:
            raise ValueError(
                "LifespanGrace.serve() takes no exit_code: the server ends the process"
            )
        sigs = [signal.Signals(s) for s in options.get("signals") or _DEFAULT_SIGNALS]
        servers = {sig: signal.getsignal(sig) for sig in sigs}
        async with graceful(**options, exit_code="return") as grace:
            self._grace = grace
            for listener, gate in self._listeners:
                grace._on_notice(listener, gate)
            handoff = asyncio.ensure_future(_hand_off(grace, servers))
            try:
                yield grace
            finally:
                handoff.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handoff


async def _hand_off(grace: AsyncGrace, servers: dict[signal.Signals, Any]) -> None:
    """When intake must stop: the server's handlers back, and the signal raised for them.

    A server with no handler of its own for the signal (``SIG_DFL``) would die
    of it at once: the requests in flight drain first (at most 80% of what is
    left), then the signal ends the process as it would have without spotgrace.
    """
    await grace.wait()
    notice = grace.notice
    sig = notice.signal if notice is not None and notice.signal is not None else signal.SIGTERM
    if sig not in servers:
        return
    if not callable(servers[sig]):
        await grace.wait_drained(0.8 * grace.remaining())
    for s, handler in servers.items():
        if handler is not None:
            signal.signal(s, handler)
    signal.raise_signal(sig)
