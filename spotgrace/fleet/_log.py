"""Structured JSON logs: one object per line on stdout (Lambda ships it to CloudWatch).

Every line has ``timestamp`` (ISO 8601 UTC), ``level``, ``message`` and, when
known, ``cluster``, ``service``, ``task_arn``, ``event_id``, ``request_id``,
``action`` and ``result``. No credentials or request signatures are ever
logged: only the fields given here.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonLog"]


class JsonLog:
    """A tiny JSON-lines logger with bound context (``bind`` returns a new one)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        context: dict[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._stream = stream
        self._context = dict(context or {})
        self._clock = clock
        self._lock = threading.Lock()

    def bind(self, **fields: Any) -> JsonLog:
        """A logger that adds ``fields`` (None values dropped) to every line."""
        ctx = {**self._context, **{k: v for k, v in fields.items() if v is not None}}
        child = JsonLog(self._stream, context=ctx, clock=self._clock)
        child._lock = self._lock
        return child

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        now = self._clock() if self._clock else None
        stamp = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
        line = {
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "message": message,
            **self._context,
            **{k: v for k, v in fields.items() if v is not None},
        }
        text = json.dumps(line, default=str, sort_keys=False) + "\n"
        with self._lock:
            stream = self._stream or sys.stdout
            stream.write(text)
            stream.flush()

    def info(self, message: str, **fields: Any) -> None:
        """Log at INFO."""
        self._emit("INFO", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        """Log at WARNING."""
        self._emit("WARNING", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log at ERROR."""
        self._emit("ERROR", message, fields)
