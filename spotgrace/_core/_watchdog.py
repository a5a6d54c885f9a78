"""The watchdog: the process is gone by the deadline, whatever is stuck.

A daemon thread that sleeps on a condition until the deadline. If it is still
armed then, it logs what is stuck (hooks, thread stacks, asyncio task stacks),
flushes the logs and calls :func:`os._exit`. It needs neither the main thread
nor the event loop, so a hook blocked in C code or a loop blocked by
``time.sleep`` cannot stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from ._threads import start_daemon

__all__ = ["Watchdog", "flush_logs", "hard_exit", "stacks"]

#: How long a hard exit waits for its report to be logged and flushed. Logging
#: can block (a stalled stdout pipe, a handler's lock held elsewhere): the
#: exit must not.
REPORT_WAIT = 0.25


def flush_logs() -> None:
    """Flush stdout, stderr and every stdlib logging handler; never raises."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            with contextlib.suppress(Exception):
                handler.flush()


def hard_exit(code: int, report: Callable[[], None], *, wait: float = REPORT_WAIT) -> NoReturn:
    """Log ``report()`` and flush, waiting at most ``wait`` s for that; then ``os._exit``."""
    reported = threading.Event()

    def run() -> None:
        try:
            report()
            flush_logs()
        finally:
            reported.set()

    start_daemon(run, name="spotgrace-exit-report")
    reported.wait(wait)
    os._exit(code)


def stacks(loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    """Stacks of every thread except the caller, and of the loop's pending tasks."""
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    threads = {
        f"{names.get(ident, '?')} ({ident})": traceback.format_stack(frame)[-8:]
        for ident, frame in sys._current_frames().items()
        if ident != me
    }
    tasks: dict[str, list[str]] = {}
    if loop is not None:
        # all_tasks is not thread-safe; the loop may be stuck or changing: best effort.
        with contextlib.suppress(Exception):
            for task in list(asyncio.all_tasks(loop)):
                frames = task.get_stack(limit=8)
                tasks[task.get_name()] = [
                    f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}" for f in frames
                ]
    return {"threads": threads, "tasks": tasks}


class Watchdog:
    """Exits the process at the deadline unless disarmed first."""

    def __init__(
        self,
        *,
        exit_code: int,
        on_fire: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exit_code = exit_code
        self._on_fire = on_fire
        self._clock = clock
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def deadline(self) -> float | None:
        """The armed deadline (``time.monotonic()`` scale), or None when disarmed."""
        return self._deadline

    def arm(self, deadline: float) -> None:
        """Arm for ``deadline``; an already armed watchdog only moves earlier."""
        with self._cond:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            if self._thread is None:
                self._thread = start_daemon(self._run, name="spotgrace-watchdog")
            self._cond.notify_all()

    def disarm(self) -> None:
        """Stand down: the process will not be ended by this watchdog."""
        with self._cond:
            self._deadline = None
            self._cond.notify_all()

    def close(self) -> None:
        """Disarm for good and let the thread end."""
        with self._cond:
            self._deadline = None
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    continue
                left = self._deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
        hard_exit(self._exit_code, self._on_fire)
