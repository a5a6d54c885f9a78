"""Start-up warnings about the environment: unknown ``SPOTGRACE_*`` variables.

Logged once per process for the same cause through the ``spotgrace``
structlog logger, so a typo (``SPOTGRACE_STOPTIMEOUT``) is not ignored in
silence.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Mapping

import structlog

__all__ = ["KNOWN_PREFIXES", "KNOWN_VARIABLES", "check_unknown", "is_known", "warn_once"]

#: Every ``SPOTGRACE_*`` variable spotgrace reads; any other one is warned about
#: at start (a typo would otherwise be ignored in silence). A module that starts
#: reading a variable of its own adds it here (``spotgrace doctor`` uses it too).
KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        "SPOTGRACE_" + n.upper()
        for n in (
            "stop_timeout",
            "margin",
            "drain_delay",
            "drain_timeout",
            "hook_timeout",
            "exit_code",
            "watchdog_exit_code",
            "second_signal",
            "interrupt",
            "signals",
            "watch",
            "watch_interval",
            "events_file",
            "celery_health_file",
            "sentinel",
        )
    }
)

#: Name spaces of subsystems that read and check variables of their own: the
#: fleet companion reads ``SPOTGRACE_FLEET_*`` (``spotgrace.fleet``, which
#: validates them itself). A variable under one of these is never "unknown" here.
KNOWN_PREFIXES: tuple[str, ...] = ("SPOTGRACE_FLEET_",)


def is_known(name: str) -> bool:
    """Whether spotgrace reads the ``SPOTGRACE_*`` variable ``name`` somewhere."""
    return name in KNOWN_VARIABLES or name.startswith(KNOWN_PREFIXES)


_log = structlog.get_logger("spotgrace")
_warned: set[tuple[str, ...]] = set()
_warned_lock = threading.Lock()


def warn_once(event: str, key: tuple[str, ...], **fields: object) -> None:
    """A configuration warning, logged once per process for the same cause."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _log.warning(event, **fields)


def check_unknown(environ: Mapping[str, str]) -> None:
    """Warn about each ``SPOTGRACE_*`` name in ``environ`` that spotgrace does not read."""
    for name in sorted(environ):
        if not name.startswith("SPOTGRACE_") or is_known(name):
            continue
        close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        warn_once(
            "config.unknown_variable",
            ("unknown", name),
            variable=name,
            did_you_mean=close[0] if close else None,
            message=f"{name} is not a spotgrace variable and is ignored{hint}",
        )
