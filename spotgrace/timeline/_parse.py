"""Reading spotgrace's JSON event lines out of whatever a user has.

Input is anything line-based: ``$SPOTGRACE_EVENTS_FILE`` (``ts`` and ``pid``
on every line), the app's own structlog JSON output (``timestamp`` in ISO
8601, no pid), ``docker logs --timestamps`` or a CloudWatch text export (a
timestamp or a ``name |`` label before the JSON), with the app's other
output mixed in. Nothing here raises on bad input: every line is either an
event or counted under one of the :class:`ParseStats` reasons.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._safe import clean_doc, needs_cleaning

__all__ = ["SCHEMA_VERSIONS", "SUPERVISOR_EVENTS", "Event", "ParseStats", "number", "parse_lines"]

#: Event schema versions this renderer understands. Events carry no version
#: today (read as version 1); an event whose ``v`` field is not listed here is
#: skipped and counted, so a newer spotgrace's events never render wrongly.
SCHEMA_VERSIONS = frozenset({1})

#: Event name prefixes spotgrace emits; other JSON lines are the app's own.
_NAMESPACES = (
    "shutdown.",
    "drain.",
    "cleanup.",
    "hook.",
    "readiness.",
    "signal.",
    "child.",
    "run.",
    "orphan.",
    "watch.",
    "protection.",
    "checkpoint.",
)

#: Events only ``spotgrace run`` (the supervisor) emits. In these, ``pid`` is
#: the child's, not the emitting process's.
SUPERVISOR_EVENTS = frozenset(
    {
        "child.started",
        "child.exited",
        "child.spawn_failed",
        "signal.forwarded",
        "signal.not_forwarded",
        "signal.absorbed",
        "run.exiting",
        "orphan.reaped",
    }
)

#: What may stand before the JSON object on a line: a ``docker compose`` /
#: ``spotgrace simulate`` label (``web-1  |``), a timestamp (``docker logs -t``:
#: ISO 8601; a CloudWatch export: ISO or Unix milliseconds), in that order or
#: the other. Anything else means "not a log line of ours".
_LABEL = r"(?:[\w.\-/]+\s*\|\s*)?"
_STAMP = r"(?:(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)|(?P<epoch>\d{10,13}))?\s*"
_PREFIX = re.compile(rf"^\s*{_LABEL}{_STAMP}{_LABEL}$")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Event:
    """One spotgrace event: its name, Unix time, process id (if known) and fields."""

    name: str
    at: float
    pid: int | None
    fields: Mapping[str, Any]
    line: int

    def number(self, key: str) -> float | None:
        """The field ``key`` as a float, or None when it is missing or not a number."""
        return number(self.fields.get(key))


@dataclass
class ParseStats:
    """How many lines were read, and why those that were not events were skipped."""

    lines: int = 0
    events: int = 0
    blank: int = 0
    unrelated: int = 0
    malformed: int = 0
    unknown_version: int = 0
    untimed: int = 0
    duplicate: int = 0
    outside: int = 0
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Non-blank lines that were not used as events."""
        return (
            self.unrelated + self.malformed + self.unknown_version + self.untimed + self.duplicate
        )

    def summary(self) -> str:
        """One line for people: ``"13 events from 20 lines; skipped 2 malformed, ..."``."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.malformed, "malformed"),
                (self.unrelated, "unrelated"),
                (self.unknown_version, "of an unknown version"),
                (self.untimed, "without a time"),
                (self.duplicate, "repeated"),
            )
            if n
        ]
        text = f"{self.events} events from {self.lines} lines"
        if self.outside:
            text += f" ({self.outside} before any notice, not drawn)"
        return text + ("; skipped " + ", ".join(parts) if parts else "")


#: The largest magnitude taken as a number of seconds; beyond it (or NaN) a
#: field is treated as missing, so a corrupt value cannot wreck the picture.
_LIMIT = 1e11


def number(value: Any) -> float | None:
    """``value`` as a finite float of sane size, or None (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not -_LIMIT < value < _LIMIT:
        return None  # float() of a 400-digit int raises OverflowError
    value = float(value)
    return value if math.isfinite(value) and abs(value) < _LIMIT else None


def _parse_time(doc: Mapping[str, Any], prefix: str) -> float | None:
    ts = number(doc.get("ts"))
    if ts is not None:
        return ts if ts >= 0 else None
    for text in (doc.get("timestamp"), doc.get("time")):
        if isinstance(text, str) and text:
            when = _iso(text)
            if when is not None:
                return when
    match = _PREFIX.match(prefix)
    if match is None:  # pragma: no cover - parse_lines only passes matching prefixes
        return None
    if match["iso"]:
        return _iso(match["iso"].replace(" ", "T").replace(",", "."))
    if match["epoch"]:
        value = int(match["epoch"])
        return value / 1000 if value > 10**11 else float(value)
    return None


def _iso(text: str) -> float | None:
    text = text.strip()
    # Docker prints nanoseconds; fromisoformat takes at most microseconds.
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$", text)
    if match is None:
        return None
    base, frac, zone = match.groups()
    frac = (frac or "")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        when = datetime.fromisoformat(base + frac + zone)
    except (ValueError, OverflowError):
        return None
    stamp = when.timestamp()
    return stamp if 0 <= stamp < _LIMIT else None


def parse_lines(lines: Iterable[str]) -> tuple[list[Event], ParseStats]:
    """The spotgrace events among ``lines`` (in input order) and what was skipped.

    Never raises on content: truncated JSON, other programs' lines, JSON
    without a spotgrace event name, events from an unknown schema version and
    events without a time are counted in the returned :class:`ParseStats`.
    """
    events: list[Event] = []
    stats = ParseStats()
    # The same event twice (a log shipped twice, two copies concatenated) would
    # read as two shutdowns, the first one cut off: the repeat is skipped.
    seen: set[tuple[str, float, Any, int]] = set()
    for number, raw in enumerate(lines, start=1):
        stats.lines += 1
        line = raw.strip()
        if not line:
            stats.blank += 1
            continue
        start = line.find("{")
        prefix = line[:start] if start >= 0 else line
        if start < 0 or not _PREFIX.match(prefix):
            stats.unrelated += 1
            continue
        try:
            doc, _ = _DECODER.raw_decode(line, start)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            stats.malformed += 1
            continue
        if isinstance(doc, dict) and needs_cleaning(line):
            doc = clean_doc(doc)  # escapes, bidi controls, surrogates, huge strings
            if doc is None:  # nested deeper than any event of ours
                stats.malformed += 1
                continue
        name = doc.get("event") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not name.startswith(_NAMESPACES):
            stats.unrelated += 1
            continue
        version = doc.get("v", 1)
        # Only an int can be a known version (a list or an object is not even hashable).
        if not (type(version) is int and version in SCHEMA_VERSIONS):
            stats.unknown_version += 1
            key = str(version)[:40]
            stats.versions[key] = stats.versions.get(key, 0) + 1
            continue
        at = _parse_time(doc, prefix)
        if at is None:
            stats.untimed += 1
            continue
        pid = None if name in SUPERVISOR_EVENTS else doc.get("pid")
        ident = (name, at, pid if isinstance(pid, int) else None, hash(line[start:]))
        if ident in seen:
            stats.duplicate += 1
            continue
        seen.add(ident)
        events.append(
            Event(
                name=name,
                at=at,
                pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                fields=doc,
                line=number,
            )
        )
        stats.events += 1
    return events, stats
