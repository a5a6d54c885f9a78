"""In-flight work tracking for threads and asyncio tasks.

The drain step waits for the count to reach zero through a :class:`Flag`, so
nothing polls. Async scopes remember their task, so that work still in flight
when the drain runs out of time can be cancelled and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from ._errors import ShutdownInterrupt

__all__ = ["InflightScope", "InflightTracker"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])


class InflightTracker:
    """Counts units of work in flight; one per coordinator.

    The hot path (enter/exit) only counts under one lock. Waiters for "nothing
    in flight" register a callback, which ``exit`` calls when the count reaches
    zero while someone waits, so nothing polls and an idle tracker costs nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._peak = 0
        self._total = 0
        self._tasks: dict[asyncio.Task[Any], int] = {}
        self._waiters: list[Callable[[], None]] = []
        # Main-thread bookkeeping for ``interrupt=True`` (only then: it costs a
        # thread lookup per scope): the interrupt is held back while the main
        # thread is inside a scope and raised when it leaves.
        self.track_main = False
        self.main_depth = 0
        self.interrupt_pending = False

    @property
    def count(self) -> int:
        """Units of work in flight now."""
        return self._count

    def enter(self, task: asyncio.Task[Any] | None) -> None:
        """Record one unit of work starting (in ``task`` if async)."""
        with self._lock:
            self._count += 1
            self._total += 1
            if self._count > self._peak:
                self._peak = self._count
            if task is not None:
                self._tasks[task] = self._tasks.get(task, 0) + 1

    def exit(self, task: asyncio.Task[Any] | None) -> None:
        """Record one unit of work ending; wake the waiters if none is left."""
        with self._lock:
            self._count -= 1
            if task is not None:
                left = self._tasks.get(task, 1) - 1
                if left:
                    self._tasks[task] = left
                else:
                    self._tasks.pop(task, None)
            if self._count or not self._waiters:
                return
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def _register(self, wake: Callable[[], None]) -> bool:
        """Add a waiter unless nothing is in flight already (then False)."""
        with self._lock:
            if self._count == 0:
                return False
            self._waiters.append(wake)
            return True

    def _unregister(self, wake: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._waiters.remove(wake)

    def wait_zero(self, timeout: float | None = None) -> bool:
        """Block until nothing is in flight; False if ``timeout`` passed first."""
        event = threading.Event()
        if not self._register(event.set):
            return True
        try:
            return event.wait(timeout) or self._count == 0
        finally:
            self._unregister(event.set)

    async def wait_zero_async(self, timeout: float | None = None) -> bool:
        """Wait in the running loop until nothing is in flight; False on timeout."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, fut)

        if not self._register(wake):
            return True
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return self._count == 0
        finally:
            self._unregister(wake)

    async def wait_zero_reporting(
        self, timeout: float, emit: Callable[..., None], *, every: float | None = None
    ) -> bool:
        """:meth:`wait_zero_async`, logging ``drain.progress`` while work is in flight.

        One event every ``every`` seconds (by default a tenth of ``timeout``,
        within 1-5 s) with what is still in flight and the time left, so a long
        drain is never silent.
        """
        period = every if every is not None else min(5.0, max(1.0, timeout / 10))
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if await self.wait_zero_async(max(0.0, min(period, left))):
                return True
            left = end - loop.time()
            if left <= 0:
                return self._count == 0
            emit("drain.progress", inflight=self._count, drain_left=round(left, 1))

    def cancel_tasks(self) -> list[asyncio.Task[Any]]:
        """Cancel every task still in flight, from any thread; returns them."""
        with self._lock:
            tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                task.get_loop().call_soon_threadsafe(task.cancel)
        return tasks

    def statistics(self) -> dict[str, int]:
        """``inflight`` (now), ``inflight_peak`` and ``inflight_total`` (ever entered)."""
        with self._lock:
            return {
                "inflight": self._count,
                "inflight_peak": self._peak,
                "inflight_total": self._total,
            }


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


class InflightScope:
    """Marks work as in flight: ``with``, ``async with``, or a decorator.

    Returned by ``grace.inflight()``. The object holds no per-use state, so one
    instance may be entered many times, concurrently, from threads and tasks.
    """

    __slots__ = ("_tracker",)

    def __init__(self, tracker: InflightTracker) -> None:
        self._tracker = tracker

    def _enter(self, task: asyncio.Task[Any] | None) -> None:
        tracker = self._tracker
        if tracker.track_main and threading.current_thread() is threading.main_thread():
            tracker.main_depth += 1  # first: an interrupt arriving from here on is held back
        tracker.enter(task)

    def _exit(self, task: asyncio.Task[Any] | None) -> None:
        tracker = self._tracker
        tracker.exit(task)
        if tracker.track_main and threading.current_thread() is threading.main_thread():
            tracker.main_depth -= 1
            if tracker.main_depth == 0 and tracker.interrupt_pending:
                tracker.interrupt_pending = False
                raise ShutdownInterrupt("intake stopped (held until in-flight work finished)")

    def __enter__(self) -> InflightScope:
        self._enter(None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(None)

    async def __aenter__(self) -> InflightScope:
        self._enter(_current_task())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(_current_task())

    def __call__(self, fn: _F) -> _F:
        """Decorate a sync or async function so each call is in flight."""
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await afn(*args, **kwargs)

            return cast(_F, async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(_F, sync_wrapper)
