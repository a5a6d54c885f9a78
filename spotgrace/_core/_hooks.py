"""Cleanup hooks: the registry, their order, and running them within the budget.

Order: lower ``order`` first; among equal orders, the last registered first
(like ``contextlib.ExitStack``: what was set up last is torn down first).
Each hook gets ``min(its timeout, what is left of the budget)``, less the time
declared by later hooks with a timeout of their own (so a hang early on cannot
starve them), but never less than an equal share of what is left. Async hooks run
in the coordinator's loop; sync hooks run in a daemon thread of their own, so
one that blocks (even in C code) cannot freeze the coordinator, and one that
never returns cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ._errors import ConfigError
from ._threads import start_daemon

__all__ = [
    "Hook",
    "HookRegistry",
    "check_hook",
    "default_registry",
    "on_shutdown",
    "ordered",
    "run_hooks",
]

_F = TypeVar("_F", bound=Callable[..., Any])
_seq = itertools.count()  # registration order across every registry


@dataclass(frozen=True)
class Hook:
    """One registered cleanup hook."""

    fn: Callable[[], Any]
    order: int
    timeout: float | None
    name: str
    seq: int

    @property
    def is_async(self) -> bool:
        """Whether it is an async function (or an object with an async ``__call__``)."""
        fn = self.fn
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def check_hook(order: object, timeout: object, fn: object) -> None:
    """Validate ``on_shutdown``'s arguments: TypeError or ConfigError naming the bad one."""
    if not callable(fn):
        raise TypeError(f"on_shutdown needs a callable, got {fn!r}")
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"on_shutdown order must be an int, got {order!r}")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"on_shutdown timeout must be a number of seconds, got {timeout!r}")
        if math.isnan(timeout) or timeout <= 0 or math.isinf(timeout):
            raise ConfigError(
                f"on_shutdown timeout must be a finite number of seconds > 0, got {timeout!r}"
            )


class HookRegistry:
    """An ordered set of cleanup hooks; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[Hook] = []

    def register(
        self,
        fn: Callable[[], Any],
        *,
        order: int = 0,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Hook:
        """Add ``fn`` (sync or async, no arguments); returns its :class:`Hook`."""
        check_hook(order, timeout, fn)
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        hook = Hook(fn=fn, order=order, timeout=timeout, name=label, seq=next(_seq))
        with self._lock:
            self._hooks.append(hook)
        return hook

    def unregister(self, fn: Callable[[], Any]) -> bool:
        """Remove every hook registered for ``fn``; True if there was one."""
        with self._lock:
            before = len(self._hooks)
            self._hooks = [h for h in self._hooks if h.fn is not fn]
            return len(self._hooks) != before

    def clear(self) -> None:
        """Remove every hook."""
        with self._lock:
            self._hooks.clear()

    def hooks(self) -> list[Hook]:
        """The hooks in registration order."""
        with self._lock:
            return list(self._hooks)

    @overload
    def on_shutdown(self, fn: _F, /) -> _F: ...
    @overload
    def on_shutdown(
        self, /, *, order: int = 0, timeout: float | None = None, name: str | None = None
    ) -> Callable[[_F], _F]: ...
    def on_shutdown(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        order: int = 0,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Any:
        """Register a cleanup hook: ``@on_shutdown`` or ``@on_shutdown(order=, timeout=)``."""
        if fn is not None:
            self.register(fn, order=order, timeout=timeout, name=name)
            return fn

        def decorate(f: _F) -> _F:
            self.register(f, order=order, timeout=timeout, name=name)
            return f

        check_hook(order, timeout, decorate)
        return decorate


#: The process-wide registry behind :func:`spotgrace.on_shutdown`.
default_registry = HookRegistry()
on_shutdown = default_registry.on_shutdown


def ordered(registries: Iterable[HookRegistry]) -> list[Hook]:
    """Every hook of ``registries``, lower order first, then last registered first."""
    hooks = [h for r in registries for h in r.hooks()]
    return sorted(hooks, key=lambda h: (h.order, -h.seq))


def _in_thread(
    fn: Callable[[], Any], name: str, loop: asyncio.AbstractEventLoop
) -> concurrent.futures.Future[Any]:
    fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def target() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            result = fn()
            if inspect.isawaitable(result):  # e.g. ``lambda: pool.aclose()``: await it
                result = asyncio.run_coroutine_threadsafe(_await(result), loop).result()
            fut.set_result(result)
        except BaseException as exc:  # reported by the runner, not lost
            fut.set_exception(exc)

    start_daemon(target, name=f"spotgrace-hook:{name}", block_signals=False)
    return fut


class HookExit(RuntimeError):
    """A hook raised SystemExit or KeyboardInterrupt; the other hooks still run."""


async def _await(aw: Awaitable[Any]) -> Any:
    """Await what a sync hook returned, in the sequence's loop."""
    try:
        return await aw
    except (SystemExit, KeyboardInterrupt) as exc:
        # Raised in a task of the sequence's loop, these would end the whole
        # sequence: later hooks would never run. It counts as a failed hook.
        raise HookExit(f"the hook raised {exc!r}") from exc


async def _call_async(fn: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await fn()
    except (SystemExit, KeyboardInterrupt) as exc:
        # In a task these would escape the event loop and end the whole sequence.
        raise HookExit(f"the hook raised {exc!r}") from exc


Emit = Callable[..., None]


def _share(hooks: list[Hook], i: int, left: float) -> float:
    """The most hook ``i`` may take of ``left``: what later explicit timeouts leave."""
    later = hooks[i + 1 :]
    reserved = sum(h.timeout for h in later if h.timeout is not None)
    return max(left - reserved, left / (len(later) + 1))


def _discarder(names: set[str], name: str) -> Callable[[object], None]:
    return lambda _fut: names.discard(name)


async def run_hooks(
    hooks: list[Hook],
    *,
    remaining: Callable[[], float],
    default_timeout: float | None,
    emit: Emit,
    running: set[str],
    more: Callable[[], list[Hook]] | None = None,
) -> dict[str, int]:
    """Run ``hooks`` in order, each capped by what is left; never raises.

    ``running`` holds the names of hooks started and not finished (a hook that
    timed out stays there while its thread lives), for the watchdog's report.
    ``more`` returns the hooks registered now: those not run yet (registered
    while the hooks ran, by a hook or another thread) run after, in order.
    Returns counts: finished, failed, timed_out, skipped.
    """
    counts = {"finished": 0, "failed": 0, "timed_out": 0, "skipped": 0}
    seen = {h.seq for h in hooks}
    batch = hooks
    while batch:
        await _run_batch(batch, remaining, default_timeout, emit, running, counts)
        batch = [h for h in (more() if more is not None else []) if h.seq not in seen]
        seen.update(h.seq for h in batch)
        if batch:
            emit("cleanup.late_hooks", hooks=[h.name for h in batch])
    return counts


async def _run_batch(
    hooks: list[Hook],
    remaining: Callable[[], float],
    default_timeout: float | None,
    emit: Emit,
    running: set[str],
    counts: dict[str, int],
) -> None:
    for i, hook in enumerate(hooks):
        left = remaining()
        if left <= 0:
            counts["skipped"] += 1
            emit("hook.skipped", hook=hook.name, order=hook.order, why="no time left")
            continue
        limit = min(hook.timeout or math.inf, default_timeout or math.inf, _share(hooks, i, left))
        emit("hook.started", hook=hook.name, order=hook.order, timeout=round(limit, 3))
        running.add(hook.name)
        start = time.monotonic()
        fut: asyncio.Future[Any]
        try:
            if hook.is_async:
                fut = asyncio.ensure_future(_call_async(hook.fn))
            else:
                thread_fut = _in_thread(hook.fn, hook.name, asyncio.get_running_loop())
                # A thread that outlives its timeout leaves `running` when it ends.
                thread_fut.add_done_callback(_discarder(running, hook.name))
                fut = asyncio.wrap_future(thread_fut)
        except Exception as exc:  # ensure_future itself failing: report and go on
            counts["failed"] += 1
            running.discard(hook.name)
            emit("hook.failed", hook=hook.name, error=repr(exc), exc_info=exc)
            continue
        done, _ = await asyncio.wait({fut}, timeout=limit)
        took = round(time.monotonic() - start, 4)
        if not done:
            counts["timed_out"] += 1
            fut.cancel()  # an async hook gets CancelledError; a thread cannot be stopped
            if hook.is_async:
                running.discard(hook.name)
            emit("hook.timeout", hook=hook.name, timeout=round(limit, 3), duration=took)
            continue
        running.discard(hook.name)
        error = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if error is None:
            counts["finished"] += 1
            emit("hook.finished", hook=hook.name, duration=took)
        else:
            counts["failed"] += 1
            emit("hook.failed", hook=hook.name, duration=took, error=repr(error), exc_info=error)
