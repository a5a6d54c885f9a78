"""The watchdog: the process is gone by the deadline, whatever is stuck.

Two mechanisms, both set up before they are needed:

- The Python watchdog, a daemon thread started when the ``graceful()`` block
  is entered, sleeps on a condition until the deadline. If it is still armed
  then, it queues a readable report of what is stuck (hooks, thread stacks,
  asyncio tasks), waits a bounded moment for the event writer to take it, and
  calls :func:`os._exit` (unconditionally: nothing on that path starts a
  thread or blocks on a log sink).
- The GIL-free backstop, :func:`faulthandler.dump_traceback_later` with
  ``exit=True``: a C thread that needs neither the GIL nor any Python code
  writes every thread's traceback to a non-blocking copy of stderr and calls
  ``_exit(1)``, :data:`BACKSTOP_LAG` after the deadline. It ends a process
  whose GIL is held by a C call (a ``ctypes.PyDLL`` call, a pathological
  regex) or starved by many CPU-bound threads, and one whose interpreter is
  already finalising (daemon threads no longer run then).

Arming either needs the GIL once. The :class:`~._sentinel.Sentinel`, a child
process, needs none: :meth:`Watchdog.arm` passes the deadline on to it too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import faulthandler
import logging
import os
import stat
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any, NoReturn

from ._eventlog import SHARED_EVENTS, EventQueue
from ._sentinel import Sentinel
from ._threads import start_daemon

__all__ = [
    "BACKSTOP_EXIT_CODE",
    "BACKSTOP_LAG",
    "Backstop",
    "Watchdog",
    "flush_logs",
    "hard_exit",
    "stacks",
]

#: How long a hard exit waits for its report to be written. Logging can block
#: (a stalled stdout pipe, a handler's lock held elsewhere): the exit must not.
REPORT_WAIT = 0.1

#: The Python watchdog wakes this long before the deadline, so that with its
#: report it is gone by then.
WATCHDOG_LEAD = 0.12

#: The backstop fires this long after the deadline, when the Python watchdog
#: has had its chance.
BACKSTOP_LAG = 0.02

#: faulthandler's ``exit=True`` calls ``_exit(1)``; the code cannot be chosen.
BACKSTOP_EXIT_CODE = 1


#: How long :func:`flush_logs` waits for a logging handler's lock before it skips it.
HANDLER_LOCK_WAIT = 0.05

#: How long :func:`flush_logs` waits for the queued spotgrace events.
EVENTS_WAIT = 0.5


def flush_logs() -> None:
    """Flush stdout, stderr and every stdlib logging handler; never raises.

    A handler whose lock stays taken for :data:`HANDLER_LOCK_WAIT` (the event
    writer stuck in it on a stalled sink) is skipped, not waited for. Flushing
    a stream to a full pipe may still block. Queued spotgrace events get
    :data:`EVENTS_WAIT` first (they are written by a thread of their own).
    """

    SHARED_EVENTS.flush(EVENTS_WAIT)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            lock = getattr(handler, "lock", None)
            with contextlib.suppress(Exception):
                if lock is not None and not lock.acquire(timeout=HANDLER_LOCK_WAIT):
                    continue  # held by a thread stuck writing: do not wait for it
                try:
                    handler.flush()
                finally:
                    if lock is not None:
                        lock.release()


def stacks(loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    """Stacks of every thread except the caller (main thread first), and of the loop's tasks."""
    me = threading.get_ident()
    main = threading.main_thread().ident
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sorted(sys._current_frames().items(), key=lambda kv: kv[0] != main)
    threads = {
        f"{names.get(ident, '?')} ({ident})": traceback.format_stack(frame)[-8:]
        for ident, frame in frames
        if ident != me
    }
    tasks: dict[str, list[str]] = {}
    if loop is not None:
        # all_tasks is not thread-safe; the loop may be stuck or changing: best effort.
        with contextlib.suppress(Exception):
            for task in list(asyncio.all_tasks(loop)):
                tframes = task.get_stack(limit=8)
                tasks[task.get_name()] = [
                    f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}" for f in tframes
                ]
    return {"threads": threads, "tasks": tasks}


def format_report(threads: dict[str, list[str]]) -> str:
    """The thread stacks as one readable multi-line text, main thread first."""
    parts = []
    for name, lines in threads.items():
        parts.append(f"Thread {name}:\n" + "".join(lines).rstrip("\n"))
    return "\n".join(parts)


def hard_exit(
    code: int, report: Callable[[], None], events: EventQueue | None, *, wait: float = REPORT_WAIT
) -> NoReturn:
    """Queue ``report()``, wait at most ``wait`` s for it to be written, then ``os._exit``.

    ``os._exit`` runs whatever happens before it: no thread is started and no
    log sink is waited on beyond ``wait``.
    """
    try:
        report()
        if events is not None:
            events.flush(wait)
    finally:
        os._exit(code)


def nonblocking_stderr() -> int:
    """A descriptor the backstop can write tracebacks to without ever blocking.

    A pipe (``docker logs``, a supervisor) is reopened through ``/proc`` as a
    new open file description with ``O_NONBLOCK``, leaving the app's stderr as
    it was; a regular file or a terminal is duplicated; anything else, or a
    failure, gives ``/dev/null``.
    """
    try:
        mode = os.fstat(2).st_mode
        if stat.S_ISFIFO(mode):
            return os.open("/proc/self/fd/2", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if stat.S_ISREG(mode) or os.isatty(2):
            return os.dup(2)
    except OSError:
        pass
    return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


#: The backstop whose faulthandler timer is armed (there is one timer per process).
_ARMED: list[Backstop] = []

#: Orders the re-arm after a fork with a disarm in another thread (renewed in a child).
_TIMER_LOCK = [threading.Lock()]


class Backstop:
    """The GIL-free end: ``faulthandler.dump_traceback_later(exit=True)``.

    process-wide (faulthandler has one such timer): arming replaces an app's own
    ``dump_traceback_later``, and :meth:`disarm` cancels it.

    The timer is cancelled around :func:`os.fork` and re-armed in the parent: a
    child forked while it is armed inherits faulthandler's locks held by a
    thread it does not have, so its own ``dump_traceback_later`` (its own
    ``graceful()`` at a notice) and its interpreter exit would wait forever.
    """

    def __init__(self) -> None:
        self._fd = -1
        self.armed = False
        self.failed: str | None = None
        self._due = 0.0  # time.monotonic() when the timer fires

    def open(self) -> None:
        """Open the descriptor the tracebacks go to (before any deadline)."""
        if self._fd < 0:
            self._fd = nonblocking_stderr()

    def arm(self, deadline: float) -> None:
        """Fire at ``deadline + BACKSTOP_LAG`` (``time.monotonic()`` scale); re-arming moves it."""
        if self._fd < 0:
            return
        self._due = deadline + BACKSTOP_LAG
        self._start_timer()

    def _start_timer(self) -> None:
        delay = max(0.001, self._due - time.monotonic())
        try:
            faulthandler.dump_traceback_later(delay, exit=True, file=self._fd)
        except (RuntimeError, OSError, ValueError) as exc:  # e.g. no thread can start
            self.failed = repr(exc)
            self.armed = False  # dump_traceback_later cancelled any earlier timer first
            return
        self.armed = True
        _ARMED[:] = [self]

    def disarm(self) -> None:
        """Cancel the timer (the process stays); keeps the descriptor for a later arm."""
        with _TIMER_LOCK[0]:
            if self.armed:
                self.armed = False
                if _ARMED and _ARMED[0] is self:
                    _ARMED.clear()
                faulthandler.cancel_dump_traceback_later()

    def close(self) -> None:
        """Disarm and close the descriptor."""
        self.disarm()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def after_fork(self) -> None:
        """In a forked child: the timer was cancelled before the fork; keep nothing."""
        self.armed = False
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class Watchdog:
    """Exits the process at the deadline unless disarmed first.

    :meth:`start` starts its thread (on entering the block); :meth:`arm` then
    only sets the deadline and wakes it, so arming needs no new thread.
    """

    def __init__(
        self,
        *,
        exit_code: int,
        on_fire: Callable[[], None],
        events: EventQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exit_code = exit_code
        self._on_fire = on_fire
        self._events = events
        self._clock = clock
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.backstop = Backstop()
        #: The child process that ends this one if even the backstop cannot be armed.
        self.sentinel = Sentinel()
        self._guard_code: int | None = None

    @property
    def deadline(self) -> float | None:
        """The armed deadline (``time.monotonic()`` scale), or None when disarmed."""
        return self._deadline

    def start(self) -> None:
        """Start the thread and open the backstop's descriptor, before any deadline."""
        self.backstop.open()
        if self._thread is None:
            self._thread = start_daemon(self._run, name="spotgrace-watchdog")

    def arm(self, deadline: float) -> None:
        """Arm for ``deadline``; an already armed watchdog only moves earlier."""
        with self._cond:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
                self.sentinel.arm(deadline)
                self.backstop.arm(deadline)
            if self._thread is None:  # not started (a bare Coordinator): try now
                with contextlib.suppress(RuntimeError):
                    self.start()
            self._cond.notify_all()

    def disarm(self) -> None:
        """Stand down: the process will not be ended by this watchdog."""
        with self._cond:
            self._deadline = None
            self.backstop.disarm()
            self.sentinel.disarm()
            self._cond.notify_all()

    def close(self) -> None:
        """Disarm for good and let the thread end."""
        with self._cond:
            self._deadline = None
            self._closed = True
            self.backstop.close()
            self.sentinel.close()
            self._cond.notify_all()

    def exit_guard(self, code: int) -> None:
        """The process is about to exit with ``code``: never let logging hold that exit up.

        While this watchdog is still armed at interpreter exit, an ``atexit``
        handler waits at most :data:`EXIT_GUARD_WAIT` for the queued events; if
        they are not written and a logging handler's lock stays taken (the
        event writer stuck on a stalled sink), ``logging.shutdown`` would wait
        until the deadline's 124: the process ends at once with ``code``
        instead (``atexit`` handlers registered before the block are skipped).
        """
        self._guard_code = code
        _GUARDED.add(self)
        _register_exit_guard()

    def after_fork(self) -> None:
        """In a forked child: no thread, no backstop; this watchdog stands down."""
        self._guard_code = None
        self._cond = threading.Condition()
        self._deadline = None
        self._closed = True
        self._thread = None
        self.backstop.after_fork()
        self.sentinel.after_fork()

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    continue
                left = self._deadline - WATCHDOG_LEAD - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
        hard_exit(self._exit_code, self._on_fire, self._events)


#: How long the exit guard waits for queued events, then for each handler's lock.
EXIT_GUARD_WAIT = 0.1

#: Watchdogs whose block announced its exit code (:meth:`Watchdog.exit_guard`).
_GUARDED: weakref.WeakSet[Watchdog] = weakref.WeakSet()
_guard_registered: list[bool] = []


def _register_exit_guard() -> None:
    # Registered late (logging registered its own atexit handler at import):
    # atexit runs the last registered first, so this runs before logging.shutdown.
    if not _guard_registered:
        _guard_registered.append(True)
        atexit.register(_exit_guard)


def _exit_guard() -> None:
    for dog in list(_GUARDED):
        code, deadline = dog._guard_code, dog.deadline
        if code is None or deadline is None:
            continue  # disarmed: the block returned, the process is not leaving
        wait = max(0.0, min(EXIT_GUARD_WAIT, deadline - WATCHDOG_LEAD - time.monotonic()))
        events = dog._events
        if events is not None and not events.flush(wait) and _a_handler_lock_is_held(wait):
            os._exit(code)


def _a_handler_lock_is_held(wait: float) -> bool:
    """Whether a stdlib logging handler's lock stays taken for ``wait`` s."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            lock = getattr(handler, "lock", None)
            if lock is None:
                continue
            if not lock.acquire(timeout=wait):
                return True
            lock.release()
    return False


def _pause_before_fork() -> None:
    # Cancelled in the parent, so that the child inherits a quiet faulthandler.
    if _ARMED and _ARMED[0].armed:
        with contextlib.suppress(Exception):
            faulthandler.cancel_dump_traceback_later()


def _resume_in_parent() -> None:
    with _TIMER_LOCK[0]:  # not re-armed after a disarm that ran during the fork
        if _ARMED and _ARMED[0].armed:
            _ARMED[0]._start_timer()


def _forget_in_child() -> None:
    _ARMED.clear()
    _TIMER_LOCK[0] = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_pause_before_fork,
        after_in_parent=_resume_in_parent,
        after_in_child=_forget_in_child,
    )
