"""spotgrace's shutdown sequence inside a Celery worker's main process.

A worker bootstep enters ``spotgrace.graceful()`` once the pool has started
(so its handlers replace Celery's for SIGTERM and SIGINT) and starts one
thread that waits for the notice. Then, with Celery's event loop still
running (so finished tasks are acked as usual):

1. the task consumer is cancelled in the event loop: no new message is taken;
2. running tasks get the drain part of the budget to finish;
3. whatever is still unfinished is cut: its message goes back on the queue
   at once, then its pool process is frozen (SIGSTOP; prefork) and killed
   when the worker leaves; a thread cannot be stopped: it is abandoned and
   ends with the process;
4. Celery's cold shutdown is asked for (nothing is left to wait for): the
   consumer closes, then the bootstep runs the cleanup hooks
   (``graceful().__exit__``), sends Celery's ``worker_shutdown`` signal,
   kills the pool processes and leaves with ``os._exit`` (billiard's pool
   teardown takes seconds; threads that run cut tasks never end);
5. just before the deadline every descendant process still alive is
   SIGKILLed; at the deadline spotgrace's watchdog ends the main process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import bootsteps, signals
from celery.worker import state as worker_state

import spotgrace
from spotgrace._core._eventlog import SHARED_EVENTS, emit
from spotgrace._core._threads import start_daemon
from spotgrace._core._watchdog import flush_logs, hard_exit

from ._health import write_beat
from ._requests import _all_requests, _describe, _held, _requests, _requeue_now
from ._settings import DRAIN_SHARE
from ._startup import check_broker, check_settings
from ._tree import kill_descendants

__all__ = ["SpotgraceStep", "StepConfig"]

#: How often the drain looks at Celery's running requests.
_POLL = 0.05
#: How long a call handed to Celery's event loop may wait there before it is
#: made from the sequence thread instead (the loop is blocked, e.g. a solo pool).
_HUB_WAIT = 1.0
#: The pools the sequence is made and tested for.
_SUPPORTED_POOLS = frozenset({"celery.concurrency.prefork", "celery.concurrency.thread"})


@dataclass(frozen=True)
class StepConfig:
    """What :func:`spotgrace.celery.install` resolved, for the bootstep."""

    graceful_kwargs: dict[str, Any]
    drain_timeout: float | None
    health_file: Path | None
    health_interval: float
    #: The settings install() set (empty with ``configure=False``).
    settings: dict[str, Any] = field(default_factory=dict)


def _drain_bound(grace: spotgrace.Grace, drain_timeout: float | None) -> float:
    """The drain's bound, shared with the core's drain step (fixed at the first call).

    Sharing it means the core's drain, run later by ``graceful().__exit__``,
    waits no second time: it only counts what this drain left in flight.
    """
    shared = getattr(getattr(grace, "_c", None), "drain_bound", None)  # private: Coordinator
    if callable(shared):
        return float(shared())
    left = grace.remaining()
    return min(drain_timeout, left) if drain_timeout is not None else DRAIN_SHARE * left


class _Shutdown:
    """One worker's sequence; created and entered by :class:`SpotgraceStep` ``start``."""

    def __init__(self, worker: Any, config: StepConfig) -> None:
        self.worker = worker
        self.config = config
        self.cm = spotgrace.graceful(**config.graceful_kwargs)
        self.grace: spotgrace.Grace | None = None
        self.abandoned: list[dict[str, Any]] = []
        self.cut_running = 0  # running tasks the drain timeout cut (held ETA ones not counted)
        self._left_in_flight: Any = None
        self.t0 = 0.0
        self.phase = "running"
        self._closing = False
        self._closed = False
        self._beat_failed = False

    # ---------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Enter ``graceful()`` (main thread) and start the sequence thread."""
        self.grace = self.cm.__enter__()
        hub = getattr(self.worker, "hub", None)
        opts = self.grace.options
        pool = type(getattr(self.worker, "pool", None)).__module__
        if pool not in _SUPPORTED_POOLS:
            emit(
                "warning", "celery.pool_unsupported", pool=pool, supported=sorted(_SUPPORTED_POOLS)
            )
        broker = check_broker(self.worker, event_loop=hub is not None)
        emit(
            "info",
            "celery.installed",
            broker=broker,
            pool=pool,
            concurrency=getattr(self.worker, "concurrency", None),
            stop_timeout=opts.stop_timeout,
            margin=opts.margin,
            event_loop=hub is not None,
        )
        self._check_settings()
        if self.config.health_file is not None:
            self._beat()
            if hub is not None:
                hub.call_repeatedly(self.config.health_interval, self._beat)
            else:
                start_daemon(self._beat_thread, name="spotgrace-celery-beat")
        start_daemon(self._run, name="spotgrace-celery")

    def _check_settings(self) -> None:
        """Log every setting install() set that the worker runs with another value of."""
        check_settings(self.worker, self.config.settings)

    def close(self) -> None:
        """Celery's shutdown reached the step: run the hooks (``graceful().__exit__``).

        After a platform shutdown (a signal or a watch notice) every task has
        finished or was cut and requeued, and Celery's consumer has closed: the
        process then sends Celery's ``worker_shutdown`` signal (its cold
        shutdown would not), kills its pool processes and leaves with
        ``os._exit`` at once, instead of waiting seconds for billiard's pool
        teardown, or for ever for threads that run cut tasks.
        """
        if self._closed:
            return
        self._closed = True
        self._closing = True
        try:
            self.cm.__exit__(None, None, None)
        except SystemExit as exc:  # a platform shutdown: leave, watchdog armed
            code = exc.code if isinstance(exc.code, int) else 0
        else:
            return  # Celery stopped by itself: its own shutdown goes on
        try:
            signals.worker_shutdown.send(sender=self.worker)
        except Exception as exc:
            emit("error", "celery.worker_shutdown_failed", error=repr(exc), exc_info=exc)
        killed = kill_descendants(os.getpid())
        # The last event is queued (never written here: a stalled stdout pipe must
        # not hold the exit); hard_exit waits a bounded moment for the writer.
        fields = {
            "exit_code": code,
            "pool_killed": killed,
            "abandoned_threads": self.abandoned,
            "elapsed": self._elapsed(),
        }
        hard_exit(code, lambda: SHARED_EVENTS.put("info", "celery.exit", fields), SHARED_EVENTS)

    # ---------------------------------------------------------------- the sequence

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 4) if self.t0 else 0.0

    def _run(self) -> None:
        grace = self.grace
        if grace is None:  # pragma: no cover - start() sets it before this thread
            return
        grace.wait()
        if self._closing:  # Celery is stopping by itself; close() runs the hooks
            return
        self.t0 = time.monotonic()
        try:
            self._drain_and_cut(grace)
        except Exception as exc:  # the shutdown must go on whatever broke
            emit("error", "celery.sequence_failed", error=repr(exc), exc_info=exc)
        # Nothing is left to wait for: Celery's cold shutdown (its warm one joins
        # the pool, which takes seconds): the consumer closes, then this step's
        # terminate() runs the hooks and leaves.
        worker_state.should_terminate = True
        hub = getattr(self.worker, "hub", None)
        if hub is not None:
            hub.call_soon(lambda: None)  # wake the loop so it sees should_terminate
        # Last resort for the process tree: just before the deadline.
        reserve = min(0.5, grace.options.margin / 4)
        time.sleep(max(0.0, grace.remaining() - reserve))
        killed = kill_descendants(os.getpid())
        if killed:
            emit("warning", "celery.tree_killed", pids=killed, elapsed=self._elapsed())
            flush_logs()

    def _drain_and_cut(self, grace: spotgrace.Grace) -> None:
        self.phase = "draining"
        self._beat()
        self._in_hub("stop_consuming", self._stop_consuming)
        end = time.monotonic() + _drain_bound(grace, self.config.drain_timeout)
        emit(
            "info",
            "celery.drain_started",
            running=len(self._running()),
            drain_for=round(end - time.monotonic(), 3),
            elapsed=self._elapsed(),
        )
        while self._running() and time.monotonic() < end:
            time.sleep(_POLL)
        unfinished = self._running()
        if unfinished:
            emit(
                "warning",
                "celery.drain_timeout",
                unfinished=len(unfinished),
                elapsed=self._elapsed(),
            )
        else:
            emit("info", "celery.drain_finished", elapsed=self._elapsed())
        # Cut what is left, and requeue what the worker holds but never started.
        self._in_hub("cut", self._cut)
        if self.cut_running:
            # Work left in flight by the drain timeout: the core's drain (which
            # shares this drain's bound, now spent) counts it, and the verdict is
            # 70, as for spotgrace.sqs and any graceful() block (docs/semantics.md).
            scope = grace.inflight()
            scope.__enter__()
            self._left_in_flight = scope
        self.phase = "stopping"
        self._beat()

    def _running(self) -> list[Any]:
        return [r for r in _requests(worker_state.reserved_requests) if not _held(r)]

    def _in_hub(self, what: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once in Celery's event loop, else from here after ``_HUB_WAIT``."""
        lock = threading.Lock()
        done = threading.Event()
        ran = [False]

        def call() -> None:
            with lock:
                if ran[0]:
                    return
                ran[0] = True
            try:
                fn()
            except Exception as exc:
                emit("error", "celery.step_failed", step=what, error=repr(exc), exc_info=exc)
            finally:
                done.set()

        hub = getattr(self.worker, "hub", None)
        if hub is not None:
            hub.call_soon(call)
            if done.wait(_HUB_WAIT):
                return
            emit("warning", "celery.event_loop_blocked", step=what, waited=_HUB_WAIT)
        call()

    def _stop_consuming(self) -> None:
        consumer = getattr(self.worker, "consumer", None)
        tc = getattr(consumer, "task_consumer", None)
        if tc is not None:
            tc.cancel()
        emit("info", "celery.intake_stopped", running=len(self._running()), elapsed=self._elapsed())

    def _cut(self) -> None:
        """Requeue every unfinished request; freeze the pool processes that run them.

        Runs in Celery's event loop. A cut pool process is stopped (SIGSTOP),
        not killed: a dead one would make billiard fork a replacement (a
        ``gc.collect()`` and a ``fork``, seconds on a busy host) in this very
        loop. It is SIGKILLed when the worker leaves. ``should_terminate`` is
        set here, so the loop ends at its next turn.
        """
        for req in _all_requests():
            info = _describe(req)
            late = bool(getattr(getattr(req, "task", None), "acks_late", False))
            if _held(req):  # an ETA/countdown: its timer must not start it now
                entry = getattr(req, "_eta_timer_entry", None)
                with contextlib.suppress(Exception):
                    if entry is not None:
                        entry.cancel()
            try:
                requeued = _requeue_now(req) if not req.acknowledged else False
            except Exception as exc:  # one message must not keep the others from going back
                emit("error", "celery.requeue_failed", **info, error=repr(exc), exc_info=exc)
                requeued = False
            stop: str | None = None
            pid = getattr(req, "worker_pid", None)
            if getattr(req, "time_start", None):
                self.cut_running += 1
            if getattr(req, "time_start", None) and pid and pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stop = "frozen, killed at exit"
            elif getattr(req, "time_start", None):
                stop = "abandoned (a thread)"
                self.abandoned.append(info)
            emit(
                "warning" if late else "error",
                "celery.task_cut",
                **info,
                requeued=requeued,
                stop=stop,
                held=_held(req),
                lost=not requeued and not late,
                elapsed=self._elapsed(),
            )
        worker_state.should_terminate = True

    # ---------------------------------------------------------------- health

    def _beat(self) -> None:
        path = self.config.health_file
        grace = self.grace
        if path is None or grace is None:
            return
        record = {
            "pid": os.getpid(),
            "hostname": getattr(self.worker, "hostname", None),
            "state": self.phase,
            "ready": grace.ready,
            "running": len(worker_state.active_requests),
        }
        try:
            write_beat(path, record)
        except OSError as exc:
            if not self._beat_failed:  # said once: the health check will fail, say why
                self._beat_failed = True
                emit(
                    "error",
                    "celery.health_write_failed",
                    path=str(path),
                    error=repr(exc),
                    hint="the health command will report this worker unhealthy",
                )
        else:
            self._beat_failed = False

    def _beat_thread(self) -> None:
        while not self._closed:
            time.sleep(self.config.health_interval)
            self._beat()


class SpotgraceStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep :func:`spotgrace.celery.install` adds (one per app)."""

    label = "spotgrace"
    requires = ("celery.worker.components:Pool",)
    #: Set on the subclass ``install()`` makes.
    config: StepConfig

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.sequence: _Shutdown | None = None

    def start(self, parent: Any) -> None:
        """Enter ``graceful()`` once the pool has started (main thread)."""
        self.sequence = _Shutdown(parent, self.config)
        self.sequence.start()

    def stop(self, parent: Any) -> None:
        """Celery's shutdown reached this step: run the hooks, set the exit code."""
        if self.sequence is None:
            return
        self.sequence.close()

    def terminate(self, parent: Any) -> None:
        """Celery's cold shutdown: the same as :meth:`stop`."""
        self.stop(parent)
