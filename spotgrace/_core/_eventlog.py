"""One place every spotgrace event goes through: structlog, plus an optional JSON-lines file.

Events are structlog events on the ``"spotgrace"`` logger (spotgrace does not
configure logging). When ``SPOTGRACE_EVENTS_FILE`` names a file, each event is
also appended to it as one JSON object per line, with ``ts`` (Unix time),
``pid``, ``level`` and ``event``: that is how ``spotgrace simulate`` reads back
what the app under rehearsal did, whatever its own logging set-up. The
variable is looked up at each event (it is meant for a child process that
inherits it) and a failure to write is ignored: the file is a diagnostic and
must never break a shutdown.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import structlog

__all__ = ["EVENTS_FILE_ENV", "emit", "write_event"]

EVENTS_FILE_ENV = "SPOTGRACE_EVENTS_FILE"

_logger = structlog.get_logger("spotgrace")


def write_event(level: str, event: str, fields: dict[str, Any]) -> None:
    """Append one event to ``$SPOTGRACE_EVENTS_FILE`` if it is set."""
    path = os.environ.get(EVENTS_FILE_ENV)
    if not path:
        return
    record = {"ts": time.time(), "pid": os.getpid(), "level": level, "event": event, **fields}
    try:
        line = json.dumps(record, default=repr, separators=(",", ":")) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", errors="replace"))
        finally:
            os.close(fd)
    except (OSError, TypeError, ValueError):
        pass


def emit(level: str, event: str, **fields: Any) -> None:
    """Log one structured spotgrace event (and tee it to the events file)."""
    write_event(level, event, fields)
    getattr(_logger, level)(event, **fields)
