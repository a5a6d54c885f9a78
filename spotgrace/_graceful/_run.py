"""``spotgrace.run()``: :func:`asyncio.run` inside ``async with graceful()``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

from .._core._coordinator import Coordinator
from ._graceful import AsyncGrace, graceful

__all__ = ["run"]

_T = TypeVar("_T")


@overload
def run(main: Coroutine[Any, Any, _T], /, **options: Any) -> _T | None: ...
@overload
def run(main: Callable[[AsyncGrace], Awaitable[_T]], /, **options: Any) -> _T | None: ...
def run(
    main: Coroutine[Any, Any, _T] | Callable[[AsyncGrace], Awaitable[_T]], /, **options: Any
) -> _T | None:
    """Run ``main`` like :func:`asyncio.run`, inside ``async with graceful(**options)``.

    ``main`` is a coroutine, or an async callable that takes the
    :class:`AsyncGrace`. When intake must stop, ``main`` is given until the work
    in flight has drained (bounded like the drain step, with ``drain.progress``
    events) to finish by itself, then cancelled, so work that ``main`` spawned
    is not cut off; work still in flight then is cancelled, counted and logged
    (``drain.timeout``), and makes the shutdown unclean. Then the hooks run.

    Like the ``with`` block: when ``main`` ends by itself or after
    ``request_shutdown()``, returns what ``main`` returned (None if it was
    cancelled). After a signal or a watch notice it does not return: the
    process exits with the verdict's code (``docs/semantics.md``), unless
    ``exit_code="return"``.
    """
    if not (inspect.iscoroutine(main) or callable(main)):
        raise TypeError(f"run() needs a coroutine or an async callable, got {main!r}")

    async def runner() -> _T | None:
        async with graceful(**options) as grace:
            aw = main if inspect.iscoroutine(main) else main(grace)
            task: asyncio.Future[_T] = asyncio.ensure_future(_contained(aw))
            stop: asyncio.Future[Any] = asyncio.ensure_future(grace.wait())
            try:
                both: set[asyncio.Future[Any]] = {task, stop}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not task.done():
                await _drain_then_cancel(grace._c, task)
            if task.cancelled():
                return None
            escaped = task.exception()
            if isinstance(escaped, _Escaped):
                # ``main``'s own sys.exit(n) / KeyboardInterrupt, raised in the block
                # as if ``main`` ran there: the verdict honours it like the with block's.
                raise escaped.inner.with_traceback(escaped.inner.__traceback__)
            return task.result()
        return None  # pragma: no cover - the block above always returns or raises

    return asyncio.run(runner())


class _Escaped(Exception):
    """Carries ``main``'s SystemExit or KeyboardInterrupt out of its task."""

    def __init__(self, inner: BaseException) -> None:
        super().__init__(repr(inner))
        self.inner = inner


async def _contained(aw: Awaitable[_T]) -> _T:
    """Await ``main`` in its task without letting SystemExit escape the event loop.

    A task that raises SystemExit or KeyboardInterrupt re-raises it out of the
    loop, which then cancels everything, the ``graceful()`` block included: the
    block would see a CancelledError and exit 70 instead of the app's own code.
    """
    try:
        return await aw
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


async def _drain_then_cancel(c: Coordinator, task: asyncio.Future[Any]) -> None:
    """Intake has stopped: let in-flight work drain, then cancel ``main``.

    Cancelling ``main`` at once would cancel the tasks it spawned (a TaskGroup)
    mid-work. What is still in flight when the drain bound runs out is
    cancelled and counted, so the verdict cannot call the shutdown clean.
    """
    start = time.monotonic()
    drained = asyncio.ensure_future(c.tracker.wait_zero_reporting(c.drain_bound(), c.emit))
    await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
    drained.cancel()
    if task.done():
        return
    if c.tracker.count:
        stuck = c.tracker.count
        cancelled = c.tracker.cancel_tasks()
        c.cancelled += len(cancelled)
        c.emit(
            "drain.timeout",
            duration=round(time.monotonic() - start, 4),
            inflight=stuck,
            cancelled=len(cancelled),
        )
    task.cancel()
    await asyncio.wait({task})
