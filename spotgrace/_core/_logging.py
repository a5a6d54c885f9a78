"""The opt-in JSON logging helper. spotgrace itself never configures logging.

Where spotgrace's events go (see :mod:`._eventlog`): to structlog when the app
configured structlog (with its stdlib integration, that is the app's
``logging`` handlers too); else, when the app configured only the standard
library (the root logger has handlers), to ``logging.getLogger("spotgrace")``
as ``"event key=value ..."`` records with the fields in ``extra``; else to
structlog's defaults.
"""

from __future__ import annotations

import sys
from typing import TextIO

import structlog

__all__ = ["configure_json_logging"]


def configure_json_logging(*, stream: TextIO | None = None, replace: bool = False) -> bool:
    """Configure structlog (globally) to write one JSON object per line; True if it did.

    For apps that want machine-readable shutdown timelines (CloudWatch, the
    ``spotgrace simulate`` timeline) and have no structlog set-up of their
    own. Each line carries ``event``, ``level``, ``timestamp`` (ISO 8601, UTC)
    and the event's fields; exceptions become structured tracebacks. Writes to
    ``stream`` (default: ``sys.stderr`` at the time of each call).

    An app's own structlog configuration is left alone (returns False): its
    processors then render spotgrace's events like any other. ``replace=True``
    replaces it all the same. Calling this again (a new ``stream``) is fine.
    """
    if structlog.is_configured() and not replace and not _ours():
        return False
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
    return True


def _ours() -> bool:
    factory = structlog.get_config().get("logger_factory")
    return isinstance(factory, _LineFactory)


class _LineFactory:
    """Loggers that write each line in one call, so other threads' output cannot
    split it (``print()``, which PrintLogger uses, writes the newline apart).
    Resolves ``sys.stderr`` late, so a swapped stream is honoured."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, *args: object) -> structlog.WriteLogger:
        return structlog.WriteLogger(file=self._stream or sys.stderr)
