"""``spotgrace.timeline``: see a shutdown, from the events it left behind.

Reads spotgrace's JSON event lines (``$SPOTGRACE_EVENTS_FILE``, the app's
structlog JSON output, ``docker logs``, a CloudWatch text export), groups them
into shutdowns (one per process and notice) and renders each as a text
timeline or as one self-contained HTML page with an inline SVG per shutdown::

    from spotgrace.timeline import read_shutdowns, render_html

    with open("events.jsonl") as f:
        shutdowns, stats = read_shutdowns(f)
    html = render_html(shutdowns, stats)

Standard library only. On the command line: ``spotgrace timeline FILE --html OUT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ._files import write_private
from ._group import group_shutdowns as group_shutdowns
from ._html import render_html as render_html
from ._model import Band as Band
from ._model import HookBar as HookBar
from ._model import Mark as Mark
from ._model import Shutdown as Shutdown
from ._parse import SCHEMA_VERSIONS as SCHEMA_VERSIONS
from ._parse import Event as Event
from ._parse import ParseStats as ParseStats
from ._parse import parse_lines as parse_lines
from ._text import render_text as render_text

__all__ = [
    "SCHEMA_VERSIONS",
    "Band",
    "Event",
    "HookBar",
    "Mark",
    "ParseStats",
    "Shutdown",
    "group_shutdowns",
    "parse_lines",
    "read_shutdowns",
    "render_html",
    "render_text",
    "write_html",
]


def read_shutdowns(lines: Iterable[str]) -> tuple[list[Shutdown], ParseStats]:
    """Parse ``lines`` and group the events into shutdowns; never raises on bad content.

    Events that come before any ``shutdown.started`` of their process belong to
    no shutdown; they are counted in ``stats.outside``.
    """
    events, stats = parse_lines(lines)
    shutdowns, stats.outside = group_shutdowns(events)
    return shutdowns, stats


def write_html(
    lines: Iterable[str], path: str | Path, *, title: str = "Shutdown timeline"
) -> tuple[list[Shutdown], ParseStats]:
    """Render the shutdowns in ``lines`` to the HTML file ``path`` (0600, atomically).

    Returns what :func:`read_shutdowns` found, so a caller can report on it.
    """
    shutdowns, stats = read_shutdowns(lines)
    write_private(Path(path), render_html(shutdowns, stats, title=title))
    return shutdowns, stats
