"""The opt-in JSON logging helper. spotgrace itself never configures logging."""

from __future__ import annotations

import sys
from typing import TextIO

import structlog

__all__ = ["configure_json_logging"]


def configure_json_logging(*, stream: TextIO | None = None) -> None:
    """Configure structlog (globally) to write one JSON object per line.

    For apps that want machine-readable shutdown timelines (CloudWatch, the
    ``spotgrace simulate`` timeline) and have no structlog set-up of their
    own. Each line carries ``event``, ``level``, ``timestamp`` (ISO 8601, UTC)
    and the event's fields; exceptions become structured tracebacks. Writes to
    ``stream`` (default: ``sys.stderr`` at the time of each call).
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=_LineFactory(stream),
        cache_logger_on_first_use=False,
    )


class _LineFactory:
    """Loggers that write each line in one call, so other threads' output cannot
    split it (``print()``, which PrintLogger uses, writes the newline apart).
    Resolves ``sys.stderr`` late, so a swapped stream is honoured."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, *args: object) -> structlog.WriteLogger:
        return structlog.WriteLogger(file=self._stream or sys.stderr)
