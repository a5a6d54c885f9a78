"""The engine of ``spotgrace run``: a PID 1 supervisor for any program.

What it does, in the order a container lives through it:

1. Blocks the signals it cares about and waits for them synchronously
   (``sigtimedwait``), the way tini does: no handler runs at an awkward
   moment, nothing is lost between two waits, and it works as PID 1, where
   the kernel drops signals that have no handler unless they are blocked.
2. Starts CMD with ``posix_spawn`` in its own process group, with an empty
   signal mask and the forwarded signals at their default action. When it is
   not PID 1 it first registers as a child subreaper, so orphaned
   grandchildren are re-parented to it and reaped.
3. Forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
   to the child (``--group``: to its whole process group) and reaps every
   child that ends, orphans included.
4. On the first shutdown signal (``SPOTGRACE_SIGNALS``, SIGTERM and SIGINT by
   default) it fixes a deadline ``stop_timeout - margin`` away; if the child is
   still there then, its whole process group gets SIGKILL, so the platform's
   own SIGKILL never lands mid-write and the supervisor can still report.
5. Exits with the child's exit code, 128 + N if the child died of signal N;
   ``-e CODE`` maps a chosen code to 0, like ``tini -e``.

Every step is a structured event on the ``spotgrace`` logger (JSON lines on
stderr by default), in the library's vocabulary: ``shutdown.started``,
``shutdown.deadline_exceeded``, ``shutdown.finished`` and the supervisor's own
``child.*``/``signal.*`` events. See ``docs/supervisor.md``. Events are queued
and written by a thread of their own (:class:`EventQueue`): a stalled stderr
never delays forwarding a signal or the deadline's SIGKILL, which always come
before the event that tells of them.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from .._core._config import Options
from .._core._eventlog import EventQueue, log_to_app, rounded
from ._reaper import Exit, reap_ready, set_child_subreaper

__all__ = ["FORWARDED_SIGNALS", "RunSettings", "Supervisor"]

#: The signals passed on to the child as they arrive.
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

#: Sent by :meth:`Supervisor.notify` to its own main thread to wake the wait; a
#: real-time signal nobody else uses, so that no ordinary signal is taken for it.
_WAKEUP = signal.Signals(signal.SIGRTMIN)

#: Reset to their default action in the child: Python ignores SIGPIPE and
#: SIGXFSZ, the supervisor ignores SIGTTOU, and an ignored disposition would
#: survive ``exec``.
_RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGCHLD, _WAKEUP)

#: Seconds the supervisor waits, after the deadline SIGKILL, for the rest of
#: the child's process group to be reaped.
GROUP_REAP_WAIT = 1.0

#: The longest the supervisor waits for its queued events to be written before it
#: returns (a stalled stderr must not keep it, or the container, alive).
FLUSH_WAIT = 1.0

#: After a notice, the supervisor leaves by this long after the deadline at the
#: latest, whether or not its last events could be written.
EXIT_GRACE = 0.05

#: Exit codes when CMD cannot be started, as shells use them.
EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Everything ``spotgrace run`` was asked to do."""

    command: tuple[str, ...]
    options: Options
    #: Forward signals to the child's whole process group, not just the child.
    group: bool = False
    #: Child exit codes reported as 0 (``-e``), e.g. 143 for "died of SIGTERM".
    map_to_zero: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Notice:
    reason: str
    source: str
    within: float | None


class Supervisor:
    """Runs one child to completion; see the module docstring for the steps.

    :meth:`run` is meant to be the last thing a process does, from its main
    thread: it leaves the supervised signals blocked when it returns, so that
    a late SIGTERM cannot replace the child's exit code with its own death.
    """

    def __init__(
        self,
        settings: RunSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        logger: Any = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._log = logger if logger is not None else structlog.get_logger("spotgrace")
        self.events = EventQueue(self._write_event, name="spotgrace-run-events", events_file=False)
        self._notices: queue.SimpleQueue[_Notice] = queue.SimpleQueue()
        self._thread_id: int | None = None
        self._t0: float | None = None
        self._source: str | None = None
        self._deadline = math.inf
        #: The child already got its shutdown signal for a notice: the platform's
        #: own, which follows, is not passed on (a spotgrace child would take a
        #: second one as "exit now").
        self._absorb_next = False
        self._killed = False
        #: Descendants other than the child reaped so far (orphans re-parented to us).
        self.orphans_reaped = 0

    # ------------------------------------------------------------------ public

    def notify(self, reason: str, *, source: str = "watch", within: float | None = None) -> None:
        """An early-warning notice: SIGTERM the child now, and start the budget.

        Thread-safe; meant for a watcher thread. ``within`` is the number of
        seconds from now by which the process must be gone (a Spot notice's
        ``time`` minus now); the deadline is then the earlier of
        ``now + stop_timeout - margin`` and ``now + within - margin`` (but at
        least ``now + within / 2``, as in the core). The child gets the first
        of the shutdown signals (``SPOTGRACE_SIGNALS``, SIGTERM by default),
        and the next shutdown signal from the platform is not passed on again.
        """
        self._notices.put(_Notice(reason, source, within))
        if self._thread_id is not None:
            signal.pthread_kill(self._thread_id, _WAKEUP)

    def run(self, *, before_spawn: Callable[[], object] | None = None) -> int:
        """Start the child, supervise it until it ends, return the exit code.

        ``before_spawn`` is called once the supervised signals are blocked and
        before the child starts: the place to start an early-warning watcher
        thread, which then inherits the blocked mask and never takes a signal
        meant for the supervisor's wait; it calls :meth:`notify`.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("spotgrace run must supervise from the main thread")
        forwarded = tuple(dict.fromkeys(FORWARDED_SIGNALS + self.settings.options.signals))
        waited = {*forwarded, signal.SIGCHLD, _WAKEUP}
        pid1 = os.getpid() == 1
        subreaper = False if pid1 else set_child_subreaper()
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        # Once the child owns the terminal, the supervisor is a background
        # process: its own writes there must not stop it (TOSTOP).
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        self._thread_id = threading.get_ident()
        self.events.start()  # after the mask: it inherits the blocked signals
        if before_spawn is not None:
            before_spawn()
        if not self._notices.empty():
            signal.pthread_kill(self._thread_id, _WAKEUP)
        child = self._spawn(forwarded)
        if child < 0:
            self.events.flush(FLUSH_WAIT)
            return -child
        self._emit(
            "child.started",
            pid=child,
            command=list(self.settings.command),
            pid1=pid1,
            subreaper=subreaper,
            forward_to="group" if self.settings.group else "child",
            stop_timeout=self.settings.options.stop_timeout,
            margin=self.settings.options.margin,
        )
        _give_terminal(child)
        ended = self._supervise(child, waited)
        return self._finish(ended)

    # ------------------------------------------------------------------ steps

    def _spawn(self, forwarded: Sequence[signal.Signals]) -> int:
        """The child's pid, or minus the exit code when it could not start."""
        command = self.settings.command
        try:
            return os.posix_spawnp(
                command[0],
                list(command),
                dict(os.environ),
                setpgroup=0,
                setsigmask=(),
                setsigdef=tuple(dict.fromkeys((*forwarded, *_RESET_IN_CHILD))),
            )
        except OSError as exc:
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXECUTE
            self._emit(
                "child.spawn_failed",
                level="error",
                command=list(command),
                error=str(exc),
                exit_code=code,
            )
            return -code

    def _supervise(self, child: int, waited: set[signal.Signals]) -> Exit:
        """Wait for signals until the child has ended; return how it ended."""
        info: signal.struct_siginfo | None
        while True:
            if self._deadline == math.inf or self._killed:
                info = signal.sigwaitinfo(waited)
            else:
                wait = max(0.0, self._deadline - self._clock())
                info = signal.sigtimedwait(waited, wait)
            if info is None:
                if self._clock() >= self._deadline:
                    self._kill_group(child)
                continue
            sig = signal.Signals(info.si_signo)
            if sig == signal.SIGCHLD:
                ended = self._reap(child)
                if ended is not None:
                    return ended
            elif sig == _WAKEUP:
                self._take_notices(child)
            else:
                self._on_signal(child, sig)

    def _on_signal(self, child: int, sig: signal.Signals) -> None:
        if sig in self.settings.options.signals:
            if self._absorb_next:
                self._absorb_next = False
                self._start_shutdown(
                    source="signal", reason=f"received {sig.name}", signal=sig.name
                )
                self._emit("signal.absorbed", signal=sig.name, why="already sent for the notice")
                return
            self._forward(child, sig)  # forward first, then the state's events
            self._start_shutdown(source="signal", reason=f"received {sig.name}", signal=sig.name)
            return
        self._forward(child, sig)

    def _take_notices(self, child: int) -> None:
        while not self._notices.empty():
            notice = self._notices.get_nowait()
            first = self._t0 is None
            self._start_shutdown(source=notice.source, reason=notice.reason, within=notice.within)
            if first:
                shutdown_signals = self.settings.options.signals
                self._forward(child, shutdown_signals[0] if shutdown_signals else signal.SIGTERM)
                self._absorb_next = True

    def _start_shutdown(self, *, source: str, within: float | None = None, **fields: Any) -> None:
        """Fix (or tighten) the deadline; the first call starts the shutdown."""
        now = self._clock()
        opts = self.settings.options
        deadline = now + opts.budget
        if within is not None:
            # As the core does: `margin` before the platform's time, never "already late".
            deadline = min(deadline, now + max(within - opts.margin, within / 2))
        if self._t0 is None:
            self._t0, self._source, self._deadline = now, source, deadline
            self._emit(
                "shutdown.started",
                stop_timeout=opts.stop_timeout,
                margin=opts.margin,
                deadline_in=round(deadline - now, 3),
                **fields,
            )
        elif deadline < self._deadline:
            self._deadline = deadline
            self._emit(
                "shutdown.deadline_moved", by=source, deadline_in=round(deadline - now, 3), **fields
            )

    def _forward(self, child: int, sig: signal.Signals) -> None:
        target = "group" if self.settings.group else "child"
        try:
            if self.settings.group:
                os.killpg(child, sig)
            else:
                os.kill(child, sig)
        except ProcessLookupError:
            self._emit("signal.not_forwarded", signal=sig.name, to=target, why="no such process")
            return
        self._emit("signal.forwarded", signal=sig.name, to=target, pid=child)

    def _kill_group(self, child: int) -> None:
        self._killed = True
        overshoot = self._clock() - self._deadline
        # ProcessLookupError: the leader is a zombie and the rest of its group is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)
        self._emit(
            "shutdown.deadline_exceeded",
            level="critical",
            action="SIGKILL",
            pgid=child,
            overshoot=round(overshoot, 6),
        )

    def _reap(self, child: int) -> Exit | None:
        result: Exit | None = None
        for ended in reap_ready():
            if ended.pid == child:
                result = ended
            else:
                self.orphans_reaped += 1
                self._emit(
                    "orphan.reaped", level="debug", pid=ended.pid, exit_code=ended.shell_code
                )
        return result

    def _reap_killed_group(self, pgid: int) -> None:
        """After the deadline SIGKILL, reap the rest of the child's group before leaving.

        They are dying already; waiting (at most ``GROUP_REAP_WAIT``) means the
        supervisor exits only once they are gone, instead of leaving them to
        whichever reaper is next. ``killpg(pgid, 0)`` fails once the last
        member, zombies included, has been reaped.
        """
        end = self._clock() + GROUP_REAP_WAIT
        while self._clock() < end:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            signal.sigtimedwait({signal.SIGCHLD}, 0.05)
            self._reap(pgid)

    def _finish(self, ended: Exit) -> int:
        if self._killed:
            self._reap_killed_group(ended.pid)
        # Orphans that ended together with the child: reap them before leaving.
        self._reap(ended.pid)
        code = ended.shell_code
        mapped = code in self.settings.map_to_zero
        self._emit(
            "child.exited",
            pid=ended.pid,
            exit_code=ended.code,
            signal=ended.signal_name,
        )
        if self._t0 is not None:
            self._emit("shutdown.finished", clean=not self._killed, killed=self._killed)
        exit_code = 0 if mapped else code
        self._emit(
            "run.exiting",
            exit_code=exit_code,
            child_exit_code=code,
            mapped_to_zero=mapped,
            orphans_reaped=self.orphans_reaped,
        )
        wait = FLUSH_WAIT
        if self._t0 is not None:  # a stalled sink keeps us at most just past the deadline
            opts = self.settings.options
            left = self._t0 + opts.budget + EXIT_GRACE - self._clock()
            wait = max(0.0, min(wait, left))
        self.events.flush(wait)
        return exit_code

    # ------------------------------------------------------------------ events

    def _when(self) -> dict[str, Any]:
        elapsed = None if self._t0 is None else round(self._clock() - self._t0, 4)
        return {"source": self._source, "elapsed": elapsed}

    def _emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Queue an event; never blocks (see :class:`EventQueue`)."""
        self.events.put(level, event, rounded({**self._when(), **fields}))

    def _write_event(self, level: str, event: str, fields: dict[str, Any]) -> None:
        log_to_app(self._log, level, event, fields)

    @property
    def flushed(self) -> bool:
        """Whether every event was written (False: some are stuck behind a stalled sink)."""
        return self.events.flush(0)


def _give_terminal(pgid: int) -> None:
    """Make the child's group the terminal's foreground group, as tini does.

    Only when stdin is a terminal whose foreground group is ours (``docker run
    -it``, a shell): otherwise an interactive child would be stopped with
    SIGTTIN on its first read. Ctrl-C then goes straight to the child's group.
    """
    try:
        if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
            return
        os.tcsetpgrp(0, pgid)  # SIGTTOU is ignored: allowed even if we lost the foreground
        # A child that read the terminal before it was its own was stopped by
        # SIGTTIN; let it go on.
        os.killpg(pgid, signal.SIGCONT)
    except OSError:
        return
