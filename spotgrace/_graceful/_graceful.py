"""``spotgrace.graceful()``: the context manager, sync and async, and ``spotgrace.run()``."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._core._config import ExitCode, Options, resolve_options
from .._core._coordinator import PLATFORM_SOURCES, Coordinator, Notice, State
from .._core._errors import ShutdownInterrupt, StateError
from .._core._inflight import InflightScope
from .._core._signals import Handler, install, restore
from .._core._threads import start_daemon
from .._core._watchdog import flush_logs
from ._early_warning import make_watcher

if TYPE_CHECKING:
    from ..watch._watcher import Watcher

__all__ = ["AsyncGrace", "Grace", "Graceful", "graceful", "run"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


class _GraceBase:
    """What the sync and async handles share: state, budget, in-flight work, hooks."""

    __slots__ = ("_c",)

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    @property
    def state(self) -> State:
        """``RUNNING``, ``DRAINING``, ``CLEANING`` or ``DONE``."""
        return self._c.state

    @property
    def ready(self) -> bool:
        """Readiness: True until a notice arrives, then False for good."""
        return self._c.notice is None and not self._c.signalled

    @property
    def stopping(self) -> bool:
        """True once intake must stop (the notice plus ``drain_delay``)."""
        return self._c.stopping.is_set()

    @property
    def notice(self) -> Notice | None:
        """Why and when the shutdown started, or None while running."""
        return self._c.notice

    @property
    def options(self) -> Options:
        """The validated options in force."""
        return self._c.options

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole budget before a notice)."""
        return self._c.remaining()

    def request_shutdown(
        self, reason: str = "requested", *, source: str = "manual", within: float | None = None
    ) -> None:
        """Start the shutdown from any thread; idempotent.

        ``within``: seconds from now by which the process must be gone (a Spot
        notice's time, say); the deadline moves earlier if that is sooner.
        """
        self._c.request_shutdown(reason, source=source, within=within)

    def inflight(self) -> InflightScope:
        """Mark work as in flight (``with``, ``async with`` or decorator); drained at shutdown."""
        return InflightScope(self._c.tracker)

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
        """Register a cleanup hook for this block only (next to the default registry's)."""
        hooks = self._c.hooks
        if fn is None:
            return hooks.on_shutdown(order=order, timeout=timeout, name=name)
        hooks.register(fn, order=order, timeout=timeout, name=name)
        return fn

    def statistics(self) -> dict[str, Any]:
        """State, in-flight counts, time left and hook outcomes."""
        return self._c.statistics()


class Grace(_GraceBase):
    """The handle a ``with spotgrace.graceful()`` block gets."""

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until intake must stop; False if ``timeout`` passed first."""
        return self._c.stopping.wait(timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Block until no work is in flight; False if ``timeout`` passed first."""
        return self._c.tracker.wait_zero(timeout)


class AsyncGrace(_GraceBase):
    """The handle an ``async with spotgrace.graceful()`` block gets."""

    __slots__ = ()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until intake must stop; False if ``timeout`` passed first."""
        return await self._c.stopping.wait_async(timeout)

    async def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until no work is in flight; False if ``timeout`` passed first."""
        return await self._c.tracker.wait_zero_async(timeout)


class Graceful:
    """The context manager :func:`graceful` returns; enter it once, sync or async."""

    def __init__(self, options: Options, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._c = Coordinator(options, clock=clock)
        self._entered = False
        self._previous: dict[signal.Signals, Handler] = {}
        self._watcher: Watcher | None = None

    def _open(self, *, sync: bool) -> None:
        if self._entered:
            raise StateError("a spotgrace.graceful() object can be entered only once")
        self._entered = True
        self._watcher = make_watcher(self._c.options, self._c.request_shutdown)
        sigs = self._c.options.signals
        self._previous = install(sigs, self._c.handle_signal, owner_type=Coordinator)
        self._c.previous_handlers = self._previous  # put back in a forked child
        kick = None
        if sync and self._c.options.interrupt:
            kick = signal.SIGINT if signal.SIGINT in sigs else sigs[0]
        self._c.start(kick_signal=kick)
        if self._watcher is not None:
            if sync:
                self._watcher.start_thread()
            else:
                self._watcher.start_task()

    def _close_begin(self, exc: BaseException | None) -> None:
        c = self._c
        c.body_running = False
        if exc is None or isinstance(exc, ShutdownInterrupt):
            c.begin(source="exit", reason="the block ended", sig=None, within=None)
        elif not c.begin(source="error", reason=f"the block raised {exc!r}", sig=None, within=None):
            # The shutdown was already under way: the exit policy may replace the
            # exception with SystemExit, so it must at least be in the log.
            c.emit("shutdown.body_failed", error=repr(exc), exc_info=exc)
        c.set_stopping()

    def _release(self) -> None:
        """Give back the signal handlers and stop the notice thread."""
        restore(self._previous)
        self._previous = {}
        self._c.stop_thread()

    def _leaving(self) -> bool:
        """Whether the platform wants the process gone (and the policy says leave)."""
        c = self._c
        notice = c.notice
        platform = c.signal_seen is not None or (
            notice is not None and notice.source in PLATFORM_SOURCES
        )
        return platform and c.options.exit_code != "return"

    def _close_end(self, exc: BaseException | None) -> bool:
        c = self._c
        self._release()
        policy: ExitCode = c.options.exit_code
        if not self._leaving():
            c.watchdog.close()
            return isinstance(exc, ShutdownInterrupt)
        # The platform wants the process gone: leave, with the watchdog still armed
        # in case the interpreter's own exit (non-daemon threads, atexit) hangs.
        # Frozen objects are skipped by the interpreter's last collections, which
        # with a web framework loaded take tens of milliseconds; atexit handlers
        # and logging's flush still run.
        gc.freeze()
        sig = c.signal_seen
        if policy == "signal":
            if sig is not None and os.getpid() != 1:  # PID 1 has no default action
                flush_logs()
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)
            raise SystemExit(128 + sig if sig is not None else 0)
        raise SystemExit(policy)

    def __enter__(self) -> Grace:
        self._open(sync=True)
        return Grace(self._c)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._c.forked:  # a forked child leaving the parent's block: nothing to run
            return False
        self._close_begin(exc)
        # The sequence gets an event loop of its own in a thread, so a sync body
        # inside someone else's loop, or a hook that blocks, cannot get in its way.
        registries = self._c.registries()
        try:
            start_daemon(
                lambda: asyncio.run(self._c.finish(registries)),
                name="spotgrace-sequence",
                block_signals=False,  # it runs user hooks, which may start processes
            ).join()
        except BaseException:
            # Interrupted while waiting (a Ctrl-C whose handler is not ours): the
            # handlers go back all the same; the watchdog stays only if leaving.
            self._release()
            if not self._leaving():
                self._c.watchdog.close()
            raise
        if self._watcher is not None:
            self._watcher.close()
        return self._close_end(exc)

    async def __aenter__(self) -> AsyncGrace:
        self._open(sync=False)
        self._c.loop = asyncio.get_running_loop()
        return AsyncGrace(self._c)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._c.forked:  # a forked child leaving the parent's block: nothing to run
            return False
        self._close_begin(exc)
        await self._c.finish(self._c.registries())
        if self._watcher is not None:
            await self._watcher.aclose()
        return self._close_end(exc)


def graceful(
    *,
    stop_timeout: float | None = None,
    margin: float | None = None,
    drain_delay: float | None = None,
    drain_timeout: float | None = None,
    hook_timeout: float | None = None,
    exit_code: ExitCode | None = None,
    watchdog_exit_code: int | None = None,
    second_signal: Literal["exit", "ignore"] | None = None,
    interrupt: bool | None = None,
    signals: Sequence[signal.Signals | int | str] | None = None,
    watch: str | Sequence[object] | None = None,
    watch_interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Graceful:
    """Handle SIGTERM/SIGINT and run the shutdown sequence; ``with`` or ``async with``.

    Every option left as ``None`` comes from its ``SPOTGRACE_<NAME>`` environment
    variable, else its default; bad values raise :class:`ConfigError` here.
    ``watch`` (``"auto"``, ``["ecs", "ec2"]``, ``"off"``...) and ``watch_interval``
    turn on early-warning polling (extra ``watch``; ``docs/early-warning.md``).
    See ``docs/reference.md`` for each option and ``docs/semantics.md`` for the
    sequence.
    """
    options = resolve_options(
        stop_timeout=stop_timeout,
        margin=margin,
        drain_delay=drain_delay,
        drain_timeout=drain_timeout,
        hook_timeout=hook_timeout,
        exit_code=exit_code,
        watchdog_exit_code=watchdog_exit_code,
        second_signal=second_signal,
        interrupt=interrupt,
        signals=signals,
        watch=watch,
        watch_interval=watch_interval,
    )
    return Graceful(options, clock=clock)


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
    in flight has drained (bounded like the drain step) to finish by itself,
    then cancelled, so work that ``main`` spawned is not cut off; then the
    hooks run. Returns what
    ``main`` returned (None if it was cancelled); after a signal the exit policy
    applies (by default ``SystemExit(0)``).
    """
    if not (inspect.iscoroutine(main) or callable(main)):
        raise TypeError(f"run() needs a coroutine or an async callable, got {main!r}")

    async def runner() -> _T | None:
        async with graceful(**options) as grace:
            aw = main if inspect.iscoroutine(main) else main(grace)
            task: asyncio.Future[_T] = asyncio.ensure_future(aw)
            stop: asyncio.Future[Any] = asyncio.ensure_future(grace.wait())
            try:
                both: set[asyncio.Future[Any]] = {task, stop}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not task.done():
                # Intake has stopped: let in-flight work drain before cancelling
                # main, which would cancel the tasks it spawned (TaskGroup).
                drained = asyncio.ensure_future(grace.wait_drained(grace._c.drain_bound()))
                both = {task, drained}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
                drained.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if task.cancelled():
                return None
            return task.result()
        return None  # pragma: no cover - the block above always returns or raises

    return asyncio.run(runner())
