"""The shutdown coordinator: one state machine per ``graceful()``.

``RUNNING → DRAINING → CLEANING → DONE``. A notice (a signal, an early-warning
source, a call, or the body ending) fixes the deadline and starts it; it runs
once. Signals reach the coordinator's own thread through the wake-up fd
(:class:`WakeupChannel`: written by the C-level handler, so the main thread
may be stuck in C code), or, when another wake-up fd displaced ours, through
the Python-level handler and a :class:`queue.SimpleQueue`. That thread turns
notices into state, times the lame-duck period, repeats the interrupt kick and
escalates a second signal. Events are queued (:class:`EventQueue`), never
written by the thread that acts; the watchdog's thread, the event writer and
the coordinator's thread all start when the block is entered, so that nothing
the deadline needs has to start a thread after the notice.

After :func:`os.fork` the child keeps none of it: the handlers in force
before the block are put back (SIGTERM ends a ``multiprocessing`` worker
again), the wake-up fd too, and the child may enter its own ``graceful()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import math
import os
import queue
import select
import signal
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ._config import Options
from ._errors import StateError
from ._eventlog import SHARED_EVENTS, rounded
from ._flag import Flag
from ._hooks import HookRegistry, default_registry, ordered, run_hooks
from ._inflight import InflightTracker
from ._notices import NoticeLoop
from ._sentinel import SENTINEL_START_WAIT, sentinel_enabled
from ._signals import Handler, WakeupChannel, restore
from ._threads import start_daemon
from ._watchdog import WATCHDOG_LEAD, Watchdog, format_report, hard_exit, stacks

__all__ = ["Coordinator", "Notice", "State"]

#: At most this share of the time to the deadline goes to the lame-duck period
#: when a notice brings the deadline closer than ``drain_delay`` allows for.
_LAME_SHARE = 0.5

#: The most time spent waiting for queued events to be written when the
#: sequence ends (bounded by the time left, too).
FLUSH_WAIT = 1.0

#: Coordinators whose block is entered, for the after-fork reset.
_ACTIVE: weakref.WeakSet[Coordinator] = weakref.WeakSet()

#: Sources whose shutdown means the platform wants the process gone.
PLATFORM_SOURCES = frozenset({"signal", "watch"})

_LEVELS = {
    "shutdown.deadline_exceeded": "critical",
    "hook.failed": "error",
    "shutdown.body_failed": "error",
    "hook.timeout": "warning",
    "hook.skipped": "warning",
    "hook.late": "warning",
    "drain.timeout": "warning",
    "signal.escalated": "warning",
    "sentinel.lost": "warning",
    "sentinel.failed": "warning",
    "notice_listener.failed": "error",
}


class State(enum.Enum):
    """Where a coordinator is in the shutdown sequence."""

    RUNNING = "running"
    DRAINING = "draining"
    CLEANING = "cleaning"
    DONE = "done"


@dataclass(frozen=True)
class Notice:
    """Why and when the shutdown started; times are on the coordinator's clock."""

    source: str
    reason: str
    signal: signal.Signals | None
    t0: float
    deadline: float


class Coordinator(NoticeLoop):
    """State, budget, in-flight tracking, hooks and the watchdog of one ``graceful()``."""

    def __init__(self, options: Options, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.clock = clock
        self.tracker = InflightTracker()
        self.tracker.track_main = options.interrupt
        self.hooks = HookRegistry()
        self.state = State.RUNNING
        self.notice: Notice | None = None
        self.signal_seen: signal.Signals | None = None
        #: Readiness, a plain attribute: read on every request (``grace.ready``).
        #: True until a signal is seen (set by the handler itself, so readiness
        #: turns red without waiting for the notice) or a notice arrives.
        self.ready = True
        self.body_running = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = Flag()
        self.done = Flag()
        self._lock = threading.RLock()
        self._deadline = math.inf
        self._stop_at: float | None = None  # time.monotonic() when the lame duck ends
        self._drain_until: float | None = None  # time.monotonic() when the drain gives up
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._running_hooks: set[str] = set()
        self._kick_pending = False
        self._kick_signal: signal.Signals | None = None
        self._hook_counts: dict[str, int] = {}
        self.cancelled = (
            0  # tasks cancelled: by spotgrace.run() before the drain, or at its timeout
        )
        self.outcome: dict[str, Any] = {}  # the fields of shutdown.finished, for the verdict
        self._log = structlog.get_logger("spotgrace")
        self.events = SHARED_EVENTS
        self.watchdog = Watchdog(
            exit_code=options.watchdog_exit_code, on_fire=self._report_stuck, events=self.events
        )
        self._wakeup: WakeupChannel | None = None
        self._kicks_unmatched = 0
        self._notice_listeners: list[Callable[[InflightTracker], None]] = []
        self.notice_gates: list[Any] = []
        self._next_kick = math.inf
        #: The handlers in force before the block (the after-fork reset restores them).
        self.previous_handlers: dict[signal.Signals, Handler] = {}
        #: True in a forked child: this coordinator does nothing there.
        self.forked = False

    # ------------------------------------------------------------------ events

    def emit(self, event: str, **fields: Any) -> None:
        """Log one structured event; a broken logging set-up never breaks shutdown."""
        notice = self.notice
        if notice is not None:
            fields.setdefault("source", notice.source)
            fields.setdefault("elapsed", round(self.clock() - notice.t0, 4))
        level = _LEVELS.get(event, "info")
        if event == "shutdown.exit" and isinstance(fields.get("code"), int):
            self.watchdog.exit_guard(fields["code"])  # an exit stuck on logging ends with it
        # Queued, never written here: a blocked log sink must not stop the sequence.
        self.events.put(level, event, rounded(fields))

    # ------------------------------------------------------------------ budget

    def remaining(self) -> float:
        """Seconds left before the deadline; the whole budget before a notice."""
        if self.notice is None:
            return self.options.budget
        return max(0.0, self._deadline - self.clock())

    @property
    def deadline(self) -> float:
        """The deadline on the coordinator's clock (``inf`` before a notice)."""
        return self._deadline

    def drain_bound(self) -> float:
        """How long the drain may still wait: ``drain_timeout``, else 80% of what was left.

        Fixed at the first call, so ``run()`` waiting for the drain and the drain
        step itself share one bound instead of taking one each.
        """
        now = time.monotonic()
        if self._drain_until is None:
            left = self.remaining()
            opt = self.options.drain_timeout
            self._drain_until = now + max(0.0, min(opt if opt is not None else 0.8 * left, left))
        return max(0.0, min(self._drain_until - now, self.remaining()))

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, kick_signal: signal.Signals | None) -> None:
        """On entering the block: the wake-up fd, then every thread the deadline needs.

        The event writer, the watchdog and the notice thread all start here,
        and the backstop's descriptor is opened: after a notice, nothing has to
        start (under ``RLIMIT_NPROC`` or at interpreter shutdown it could not).
        """
        self._kick_signal = kick_signal
        self.body_running = True
        self._wakeup = WakeupChannel()
        if self.options.signals and threading.current_thread() is threading.main_thread():
            self._wakeup.install()
            if sentinel_enabled():
                relay = self.watchdog.sentinel.spawn(
                    signal_fd=self._wakeup.read_fd,
                    budget=self.options.budget,
                    signals=self.options.signals,
                )
                if relay >= 0:
                    self._wakeup.relay_through(relay)
                else:  # the in-process watchdog and backstop remain
                    self.emit("sentinel.failed", error=self.watchdog.sentinel.failed)
        # A signal whose handler ran before the channel existed is in the queue
        # with nothing to wake the thread for it: one wake-up byte covers it.
        self._wakeup.wake()
        if self._wakeup.listen_fd != self._wakeup.read_fd:
            # Until the sentinel reads, a signal would start its deadline late
            # (its interpreter takes ~10 ms of CPU to start: far longer among
            # busy threads). Its hello, a zero byte on the relay, says it reads.
            select.select([self._wakeup.listen_fd], [], [], SENTINEL_START_WAIT)
        try:
            self.events.start()
            self.watchdog.start()
            self._thread = start_daemon(self._serve, name="spotgrace-coordinator")
        except BaseException:
            self._wakeup.uninstall()
            self._wakeup.close()
            self._wakeup = None
            self.watchdog.sentinel.close()
            raise
        _ACTIVE.add(self)

    def stop_thread(self) -> None:
        """Ask the notice thread to end and give back the wake-up fd (on leaving the block)."""
        _ACTIVE.discard(self)
        if self._wakeup is not None and not self.forked:
            self._wakeup.uninstall()
        self._queue.put(("close",))
        if self._wakeup is not None:
            self._wakeup.wake()

    def after_fork_in_child(self) -> None:
        """In a forked child: put back the handlers and wake-up fd, and stand down."""
        self.forked = True
        self.body_running = False
        self._kick_pending = False
        with contextlib.suppress(Exception):
            restore(self.previous_handlers)
        if self._wakeup is not None:
            self._wakeup.uninstall()
            self._wakeup.close()
        self.watchdog.after_fork()

    def request_shutdown(self, reason: str, *, source: str, within: float | None) -> None:
        """Start (or tighten) the shutdown from any thread."""
        if self._thread is None:
            raise StateError("request_shutdown() needs an entered spotgrace.graceful() block")
        if within is not None and (math.isnan(within) or within < 0):
            raise ValueError(f"within must be a number of seconds >= 0, got {within!r}")
        self.begin(source=source, reason=reason, sig=None, within=within)
        self._queue.put(("wake",))
        if self._wakeup is not None:
            self._wakeup.wake()

    def begin(
        self,
        *,
        source: str,
        reason: str,
        sig: signal.Signals | None,
        within: float | None,
        late: float = 0.0,
    ) -> bool:
        """Fix the deadline and leave RUNNING; later notices may only tighten it.

        ``late``: how long ago the notice really came (a signal read late,
        waiting for the GIL): the deadline and the lame duck count from then.
        """
        with self._lock:
            now = self.clock()
            deadline = now - late + self.options.budget
            if within is not None:
                # Aim `margin` before the platform's time, but never at "already late".
                deadline = min(deadline, now + max(within - self.options.margin, within / 2))
            if self.notice is not None:
                if deadline < self._deadline:
                    self._deadline = deadline
                    self.notice = dataclasses.replace(self.notice, deadline=deadline)
                    self.watchdog.arm(time.monotonic() + (deadline - now))
                    if self._stop_at is not None:  # the lame duck must fit the new deadline
                        cap = time.monotonic() + _LAME_SHARE * (deadline - now)
                        self._stop_at = min(self._stop_at, cap)
                    self.emit("shutdown.deadline_moved", deadline_in=round(deadline - now, 3))
                return False
            # The lame duck, like the deadline, counts from the notice: at most
            # half the time from the notice to the deadline; `left` is what remains now.
            lame = 0.0 if source in ("exit", "error") else self.options.drain_delay
            lame = max(0.0, min(lame, _LAME_SHARE * (deadline - now + late)))
            left = max(0.0, lame - late)
            self.notice = Notice(source, reason, sig, now - late, deadline)
            # Before readiness turns red: whatever reads ``ready`` False finds the
            # listeners' work done (a lean request's response then says close).
            self._tell_notice_listeners()
            self.turn_red()
            self._deadline = deadline
            self.state = State.DRAINING
            self._stop_at = time.monotonic() + left
            self.watchdog.arm(time.monotonic() + (deadline - now))
            self.emit(
                "shutdown.started",
                reason=reason,
                signal=sig.name if sig else None,
                stop_timeout=self.options.stop_timeout,
                margin=self.options.margin,
                deadline_in=round(deadline - now, 3),
                deadline_at=round(deadline - (now - late), 4),  # on the notice's axis (elapsed)
                drain_delay=lame,
                inflight=self.tracker.count,
                **({"late": round(late, 4)} if late >= 0.001 else {}),
            )
            self.emit("readiness.changed", ready=False)
        if left == 0:
            self.set_stopping()
        return True

    def on_notice(self, listener: Callable[[InflightTracker], None], gate: Any = None) -> None:
        """Call ``listener(tracker)`` at the notice, in the thread that takes it.

        For work that was not counted before the notice (the HTTP integrations'
        lean paths): the listener counts it in the tracker before ``begin()``
        returns, so no drain can start without it. Called once, just before
        readiness turns red, under the coordinator's lock: it must not block.

        ``gate``: an object whose ``open`` is set False the moment readiness turns
        red, wherever that happens (a signal handler turns it red before the
        notice is taken), so a path that reads it never sees readiness red with
        the gate still open. Registered once readiness is red already (a
        middleware made after the notice), the gate is closed at once and the
        listener is not kept.
        """
        with self._lock:
            if self.notice is not None or not self.ready:
                # Too late for a listener: the gate starts closed (nothing was lean).
                if gate is not None:
                    gate.open = False
                return
            if gate is not None:
                self.notice_gates.append(gate)
            self._notice_listeners.append(listener)

    def _tell_notice_listeners(self) -> None:
        for listener in list(self._notice_listeners):
            try:
                listener(self.tracker)
            except Exception as exc:  # a listener's fault must not stop the shutdown
                self.emit("notice_listener.failed", error=repr(exc))

    def set_stopping(self) -> None:
        """End the lame duck: intake must stop now. Idempotent."""
        with self._lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
            self.emit("shutdown.stopping", inflight=self.tracker.count)
            # Also from the main thread itself (an admin request in serve_forever()):
            # the handler runs at its next bytecode, and holds the interrupt back
            # while the main thread is inside an inflight() scope.
            kick = self._kick_signal
            if kick is not None and self.options.interrupt and self.body_running:
                self._kick_pending = True
                self._kick()
        if self._wakeup is not None:
            self._wakeup.wake()  # the notice thread repeats the kick

    def _not_a_notice(self) -> None:
        """A watched signal went to someone else's handler: the sentinel's deadline is void."""
        with self._lock:
            if self.notice is None:
                self.watchdog.sentinel.disarm()
                if self._wakeup is not None:
                    self._wakeup.take_arrival()  # that signal's time, not a notice's

    def _late(self) -> float:
        """How long ago the sentinel read the signal now handled (0 if unknown).

        At most the whole budget: a stale or odd time must not end the
        shutdown before it starts.
        """
        arrival = self._wakeup.take_arrival() if self._wakeup is not None else None
        if arrival is None:
            return 0.0
        return min(max(0.0, time.monotonic() - arrival), self.options.budget)

    def _relay_lost(self) -> None:
        """The sentinel's relay pipe ended; a warning unless it was told to quit."""
        if self.watchdog.sentinel.running:
            self.emit("sentinel.lost", fallback="the coordinator reads the wake-up fd")

    def _on_signal(self, sig: signal.Signals) -> None:
        first_signal = self.signal_seen is None
        if first_signal:
            self.signal_seen = sig
            late = self._late()
            reason = f"received {sig.name}"
            if self.begin(source="signal", reason=reason, sig=sig, within=None, late=late):
                return
            self.emit("shutdown.signal", signal=sig.name)  # e.g. SIGTERM after a watch notice
            return
        if self.options.second_signal == "ignore":
            self.emit("signal.ignored", signal=sig.name, state=self.state.value)
            return
        code = 128 + sig
        hard_exit(
            code,
            lambda: self.emit(
                "signal.escalated", signal=sig.name, state=self.state.value, exit_code=code
            ),
            self.events,
        )

    # ------------------------------------------------------------------ the sequence

    async def finish(self, registries: list[HookRegistry]) -> None:
        """Drain in-flight work, then run the hooks; the block's exit awaits this."""
        self.loop = asyncio.get_running_loop()
        start = time.monotonic()
        self.emit("drain.started", inflight=self.tracker.count)
        drained = await self.tracker.wait_zero_reporting(self.drain_bound(), self.emit)
        took = round(time.monotonic() - start, 4)
        if drained:
            self.emit("drain.finished", duration=took)
        else:
            stuck = self.tracker.count
            cancelled = self.tracker.cancel_tasks()
            self.cancelled += len(cancelled)
            self.emit("drain.timeout", duration=took, inflight=stuck, cancelled=len(cancelled))
            # Give this loop's cancelled tasks a moment to unwind (their finally blocks).
            here = {t for t in cancelled if t.get_loop() is self.loop}
            if here:
                await asyncio.wait(here, timeout=max(0.0, min(1.0, self.remaining() / 10)))
        with self._lock:
            self.state = State.CLEANING
        hooks = ordered(registries)
        self.emit("cleanup.started", hooks=len(hooks))
        # Aim to be done a little before the deadline, so that the orderly exit
        # and not the watchdog ends a shutdown whose hooks ran out of time.
        reserve = min(0.2, max(WATCHDOG_LEAD + 0.02, self.options.margin / 4))
        counts = await run_hooks(
            hooks,
            remaining=lambda: self.remaining() - reserve,
            default_timeout=self.options.hook_timeout,
            emit=self.emit,
            running=self._running_hooks,
            more=lambda: ordered(registries),  # hooks registered while these run
        )
        self._hook_counts = counts
        with self._lock:
            self.state = State.DONE
        self.done.set()
        clean = (
            drained
            and self.cancelled == 0
            and not any(v for k, v in counts.items() if k != "finished")
        )
        self.outcome = {"clean": clean, "drained": drained, "cancelled": self.cancelled, **counts}
        self.emit("shutdown.finished", **self.outcome)
        await self._flush_events()

    def flush_events(self) -> None:
        """Wait a bounded moment (never past the deadline) for queued events to be written.

        For the last event before the process leaves: the writer is a daemon
        thread, and the interpreter does not wait for it.
        """
        self.events.flush(max(0.0, min(FLUSH_WAIT, self.remaining() - 0.1)))

    async def _flush_events(self) -> None:
        """Give the event writer a bounded moment, without blocking the loop."""
        end = time.monotonic() + max(0.0, min(FLUSH_WAIT, self.remaining() - 0.1))
        # The writer is a thread (a threading.Condition, nothing awaitable): poll briefly.
        while not self.events.flush(0) and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.002)

    def _report_stuck(self) -> None:
        found = stacks(self.loop)
        self.emit(
            "shutdown.deadline_exceeded",
            state=self.state.value,
            stuck_hooks=sorted(self._running_hooks),
            inflight=self.tracker.count,
            exit_code=self.options.watchdog_exit_code,
            report=format_report(found["threads"]),
            **found,
        )

    def statistics(self) -> dict[str, Any]:
        """Counters and state, for health pages and tests."""
        stats: dict[str, Any] = {"state": self.state.value, **self.tracker.statistics()}
        stats["remaining"] = round(self.remaining(), 4)
        stats.update({f"hooks_{k}": v for k, v in self._hook_counts.items()})
        return stats

    def registries(self) -> list[HookRegistry]:
        """The hook registries this coordinator runs: the default one and its own."""
        return [default_registry, self.hooks]


def _reset_after_fork() -> None:
    SHARED_EVENTS.after_fork()
    for coordinator in list(_ACTIVE):
        coordinator.after_fork_in_child()
    _ACTIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
