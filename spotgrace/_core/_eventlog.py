"""One place every spotgrace event goes through: structlog, plus an optional JSON-lines file.

Events are structlog events on the ``"spotgrace"`` logger (spotgrace does not
configure logging). When ``SPOTGRACE_EVENTS_FILE`` names a file, each event is
also appended to it as one JSON object per line, with ``ts`` (Unix time),
``pid``, ``level`` and ``event``: that is how ``spotgrace simulate`` reads back
what the app under rehearsal did, whatever its own logging set-up. The
variable is looked up at each event (it is meant for a child process that
inherits it) and a failure to write is ignored: the file is a diagnostic and
must never break a shutdown.

The shutdown path never logs in the thread that acts. :class:`EventQueue`
takes an event in O(1) without blocking (a bounded deque; when it is full the
event is dropped and counted) and a daemon thread started beforehand hands it
to structlog. A stalled stdout pipe or a logging lock held by a stuck thread
then stalls that thread only: the state has changed, the signal was forwarded,
the process exits on time, and what could not be written is counted
(``log.dropped``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from ._threads import start_daemon

__all__ = ["EVENTS_FILE_ENV", "SHARED_EVENTS", "EventQueue", "emit", "rounded", "write_event"]

EVENTS_FILE_ENV = "SPOTGRACE_EVENTS_FILE"

#: Events held for the writer thread before new ones are dropped.
QUEUE_LIMIT = 1000

_logger = structlog.get_logger("spotgrace")


def rounded(value: Any) -> Any:
    """Floats rounded to 4 decimals (0.1 ms), recursively in lists and dicts."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def write_event(level: str, event: str, fields: dict[str, Any], *, ts: float | None = None) -> None:
    """Append one event to ``$SPOTGRACE_EVENTS_FILE`` if it is set."""
    path = os.environ.get(EVENTS_FILE_ENV)
    if not path:
        return
    stamp = time.time() if ts is None else ts
    iso = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")
    record = {
        "ts": stamp,
        "time": iso.replace("+00:00", "Z"),
        "pid": os.getpid(),
        "level": level,
        "event": event,
        **fields,
    }
    try:
        line = json.dumps(record, default=repr, separators=(",", ":")) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)
    except (OSError, TypeError, ValueError):
        pass


_STDLIB_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def log_to_app(logger: Any, level: str, event: str, fields: dict[str, Any]) -> None:
    """Hand one event to the app's logging: structlog if configured, else stdlib if configured.

    With structlog configured (its stdlib integration included), structlog
    decides. With only the standard library configured (the root logger has
    handlers), the event is a record of ``logging.getLogger("spotgrace")``:
    message ``"event key=value ..."``, fields in ``extra`` under
    ``spotgrace``. With neither, structlog's defaults.
    """
    if not structlog.is_configured() and logging.getLogger().handlers:
        std = logging.getLogger("spotgrace")
        number = _STDLIB_LEVELS.get(level, logging.INFO)
        if std.isEnabledFor(number):
            exc = fields.get("exc_info")
            shown = " ".join(f"{k}={v!r}" for k, v in fields.items() if k != "exc_info")
            std.log(
                number,
                "%s %s",
                event,
                shown,
                exc_info=exc if isinstance(exc, BaseException) else None,
                extra={"spotgrace": {"event": event, **fields}},
            )
        return
    getattr(logger, level)(event, **fields)


def emit(level: str, event: str, **fields: Any) -> None:
    """Log one structured spotgrace event (and tee it to the events file), synchronously."""
    fields = rounded(fields)
    write_event(level, event, fields)
    log_to_app(_logger, level, event, fields)


Sink = Callable[[str, str, dict[str, Any]], None]


def _structlog_sink(logger: Any) -> Sink:
    def sink(level: str, event: str, fields: dict[str, Any]) -> None:
        log_to_app(logger, level, event, fields)

    return sink


class EventQueue:
    """A bounded, non-blocking event queue drained by one daemon thread.

    :meth:`put` never blocks and never raises: it appends to a deque (atomic
    in CPython) or, when ``limit`` events are already waiting, counts the
    event as dropped. :meth:`start` starts the writer thread; call it before
    the events matter (the shutdown must not depend on starting a thread).
    :meth:`flush` waits, at most ``timeout`` seconds, until everything put so
    far was written.
    """

    def __init__(
        self,
        sink: Sink | None = None,
        *,
        limit: int = QUEUE_LIMIT,
        name: str = "spotgrace-events",
        events_file: bool = True,
    ) -> None:
        self._sink = sink if sink is not None else _structlog_sink(_logger)
        self._limit = limit
        self._name = name
        self._events_file = events_file
        self._reset()

    def _reset(self) -> None:
        self._items: collections.deque[tuple[str, str, dict[str, Any], float]] = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition(threading.Lock())
        self._put_count = 0
        self._written = 0
        self.dropped = 0
        self._reported_drops = 0
        self._thread: threading.Thread | None = None

    def after_fork(self) -> None:
        """In a forked child: the writer thread is gone; start afresh (lazily)."""
        self._reset()

    @property
    def started(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the writer thread if it is not running (raises if it cannot start)."""
        if self.started:
            return
        self._thread = start_daemon(self._run, name=self._name)

    def put(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Queue one event; never blocks. Drops (and counts) it when the queue is full."""
        if len(self._items) >= self._limit:
            self.dropped += 1
            return
        self._put_count += 1
        self._items.append((level, event, fields, time.time()))
        if not self.started:
            with contextlib.suppress(Exception):  # no thread can start: the events wait
                self.start()
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the events put so far to be written; True if they were."""
        target = self._put_count
        end = time.monotonic() + max(0.0, timeout)
        if not self.started:
            return self._written >= target
        with self._done:
            while self._written < target:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._items:
                level, event, fields, ts = self._items.popleft()
                self._write(level, event, fields, ts)
                if self.dropped > self._reported_drops:
                    count, self._reported_drops = self.dropped, self.dropped
                    self._write("warning", "log.dropped", {"dropped": count}, time.time())
                with self._done:
                    self._written += 1
                    self._done.notify_all()

    def _write(self, level: str, event: str, fields: dict[str, Any], ts: float) -> None:
        if self._events_file:
            write_event(level, event, fields, ts=ts)
        with contextlib.suppress(Exception):  # a broken logging set-up never breaks a shutdown
            self._sink(level, event, fields)


#: One event writer for every coordinator in the process (its thread never ends).
SHARED_EVENTS = EventQueue()
