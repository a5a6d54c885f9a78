"""``spotgrace.graceful()``: the context manager, sync and async, and ``spotgrace.run()``."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._core._config import ExitCode, Options, resolve_options
from .._core._coordinator import PLATFORM_SOURCES, Coordinator, Notice, State
from .._core._errors import ShutdownInterrupt, StateError
from .._core._hooks import check_hook
from .._core._inflight import InflightScope, InflightTracker
from .._core._signals import Handler, install, restore
from .._core._threads import start_daemon
from .._core._watchdog import flush_logs
from ._early_warning import make_watcher
from ._verdict import Verdict, apply_policy

if TYPE_CHECKING:
    from ..watch._watcher import Watcher

__all__ = ["AsyncGrace", "Grace", "Graceful", "graceful"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


class _GraceBase:
    """What the sync and async handles share: state, budget, in-flight work, hooks."""

    __slots__ = ("_c", "_v")

    def __init__(self, coordinator: Coordinator, verdict: Verdict | None = None) -> None:
        self._c = coordinator
        self._v = Verdict() if verdict is None else verdict

    @property
    def state(self) -> State:
        """``RUNNING``, ``DRAINING``, ``CLEANING`` or ``DONE``."""
        return self._c.state

    if TYPE_CHECKING:

        @property
        def ready(self) -> bool:
            """Readiness: True until a notice arrives, then False for good."""

    else:
        # Read on every request by the HTTP integrations: a getter in C, no Python frame.
        ready = property(
            attrgetter("_c.ready"),
            doc="Readiness: True until a notice arrives, then False for good.",
        )

    @property
    def stopping(self) -> bool:
        """True once intake must stop (the notice plus ``drain_delay``)."""
        return self._c.stopping.is_set()

    def _on_notice(self, listener: Callable[[InflightTracker], None], gate: Any = None) -> None:
        # For the HTTP integrations: see Coordinator.on_notice.
        self._c.on_notice(listener, gate)

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

    def mark_incomplete(self, reason: str = "the app marked its work incomplete") -> None:
        """Say the work is not done: the process exits with the "retry me" code, 75.

        For a job stopped by the platform before it finished, so that a
        scheduler (AWS Batch, Step Functions) retries it. ``checkpointed()``
        calls it for an iteration that did not reach its end. Any thread.
        """
        self._v.mark_incomplete(str(reason))

    @property
    def exit_code(self) -> int | None:
        """The verdict's exit code once the block has ended (None before).

        0 clean and finished, 70 not clean, 75 interrupted before the work was
        done, or the code of the app's own ``SystemExit``. With
        ``exit_code="return"``, or after ``request_shutdown()``, the block
        returns and ``sys.exit(grace.exit_code)`` passes the verdict on.
        """
        return self._v.code

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
        if fn is None:

            def decorate(f: _F) -> _F:
                self._register(f, order, timeout, name)
                return f

            check_hook(order, timeout, decorate)  # bad arguments fail here, not when applied
            return decorate
        self._register(fn, order, timeout, name)
        return fn

    def _register(
        self, fn: Callable[..., Any], order: int, timeout: float | None, name: str | None
    ) -> None:
        hook = self._c.hooks.register(fn, order=order, timeout=timeout, name=name)
        if self._c.state is State.DONE:
            # The cleanup has run: this hook never will. Say so, and in the verdict.
            self._v.late_hook(hook.name)
            self._c.emit("hook.late", hook=hook.name, why="registered after the cleanup ran")

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
        self._v = Verdict()
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
        elif isinstance(exc, SystemExit):  # the app's own exit: honoured, not a failure
            reason = f"the app called sys.exit({exc.code!r})"
            c.begin(source="exit", reason=reason, sig=None, within=None)
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
        verdict = self._v.decide(c.outcome, exc)
        if isinstance(exc, SystemExit):
            # The app's own exit code wins over the policy; the exception goes on.
            c.emit("shutdown.exit", code=verdict[0], why=verdict[1])
            c.flush_events()
            if not self._leaving():
                c.watchdog.close()
            return False
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
        code, why = apply_policy(policy, verdict, None if sig is None else 128 + sig)
        c.emit("shutdown.exit", code=code, why=why)
        if policy == "signal" and sig is not None and os.getpid() != 1:  # PID 1: no default
            flush_logs()
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        c.flush_events()
        raise SystemExit(code)

    def __enter__(self) -> Grace:
        self._open(sync=True)
        return Grace(self._c, self._v)

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
        return AsyncGrace(self._c, self._v)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._c.forked:  # a forked child leaving the parent's block: nothing to run
            return False
        exc = _escaped_exit(exc)
        self._close_begin(exc)
        await self._c.finish(self._c.registries())
        if self._watcher is not None:
            await self._watcher.aclose()
        return self._close_end(exc)


def _escaped_exit(exc: BaseException | None) -> BaseException | None:
    """The app's ``sys.exit(n)`` in another task, if that is why the body was cancelled.

    A task that raises SystemExit re-raises it out of the event loop;
    ``asyncio.run()`` then cancels the remaining tasks, this block's included,
    while the SystemExit is still being handled, so it is the CancelledError's
    context. The block honours it like its own: it exits with the app's code
    and the SystemExit goes on, rather than raising SystemExit(70) over it.
    """
    if isinstance(exc, asyncio.CancelledError) and isinstance(exc.__context__, SystemExit):
        return exc.__context__
    return exc


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
