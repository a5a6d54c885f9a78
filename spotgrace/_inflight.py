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
from ._flag import Flag

__all__ = ["InflightScope", "InflightTracker"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])


class InflightTracker:
    """Counts units of work in flight; one per coordinator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._peak = 0
        self._total = 0
        self._tasks: dict[asyncio.Task[Any], int] = {}
        self.zero = Flag(initially=True)
        # Main-thread bookkeeping for ``interrupt=True``: the interrupt is held
        # back while the main thread is inside a scope and raised when it leaves.
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
            self._peak = max(self._peak, self._count)
            if task is not None:
                self._tasks[task] = self._tasks.get(task, 0) + 1
            self.zero.clear()

    def exit(self, task: asyncio.Task[Any] | None) -> None:
        """Record one unit of work ending."""
        with self._lock:
            self._count -= 1
            if task is not None:
                left = self._tasks.get(task, 1) - 1
                if left:
                    self._tasks[task] = left
                else:
                    self._tasks.pop(task, None)
            if self._count == 0:
                self.zero.set()

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
        is_main = threading.current_thread() is threading.main_thread()
        if is_main:  # first: an interrupt arriving from here on is held back
            self._tracker.main_depth += 1
        self._tracker.enter(task)

    def _exit(self, task: asyncio.Task[Any] | None) -> None:
        tracker = self._tracker
        tracker.exit(task)
        if threading.current_thread() is threading.main_thread():
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
