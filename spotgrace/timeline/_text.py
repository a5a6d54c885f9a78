"""The terminal rendering: a header, phases and hooks as bars, the events, the verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ._model import Shutdown
from ._parse import ParseStats

__all__ = ["render_text"]

#: Event fields not worth showing in the event list.
_HIDDEN = frozenset(
    {"ts", "pid", "level", "event", "timestamp", "logger", "elapsed", "source", "v"}
    | {"threads", "tasks", "stacks", "statistics", "exc_info", "exception"}
)
_GLYPH = {"ok": "=", "failed": "X", "timed out": "!", "skipped": ".", "running": "?"}
_BAND = {"lame duck": "~", "drain": "-", "cleanup": "#"}


def _clock(unix: float) -> str:
    try:
        when = datetime.fromtimestamp(unix, tz=UTC)
    except (ValueError, OverflowError, OSError):  # a corrupt time: no calendar date
        return f"Unix time {unix:.3f}"
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _bar(start: float, end: float, scale: float, width: int, glyph: str) -> str:
    # Clamped both ways: a corrupt negative start must not draw a bar miles long.
    a = max(0, min(width - 1, int(start * scale)))
    b = max(a + 1, min(width, round(end * scale)))
    return " " * a + glyph * (b - a) + " " * (width - b)


def render_shutdown_text(s: Shutdown, *, width: int = 48) -> str:
    """One shutdown as text lines."""
    lines = [f"== {s.process}: notice at {_clock(s.notice_at)} ({s.source}: {s.reason})"]
    limits = []
    if s.stop_timeout is not None:
        limits.append(f"stop_timeout {s.stop_timeout:g} s")
    if s.deadline is not None:
        limits.append(f"deadline +{s.deadline:.3f} s")
    if s.kill_at is not None:
        est = " (estimated)" if s.kill_estimated else ""
        limits.append(f"platform SIGKILL +{s.kill_at:.3f} s{est}")
    if s.exit_at is not None:
        code = "?" if s.exit_code is None else str(s.exit_code)
        limits.append(f"exit +{s.exit_at:.3f} s (code {code}, {s.exit_why})")
    if limits:
        lines.append("   " + ", ".join(limits))
    span = max(s.span, 1e-3)
    scale = width / span
    lines.append(f"   {'':<22}|{'0':<{width // 2}}{'+' + _seconds(span):>{width - width // 2}}|")
    if s.child_exit is not None:
        at, child_code, why = s.child_exit
        who = f"child pid {s.child_pid}" if s.child_pid else "child"
        bar = _bar(0.0, at, scale, width, "=" if child_code == 0 else "?")
        lines.append(f"   {who:<22}|{bar}| {why} after {_seconds(at)}")
    for band in s.bands:
        bar = _bar(band.start, band.end, scale, width, _BAND.get(band.name, "-"))
        lines.append(f"   {band.name:<22}|{bar}| {_seconds(band.end - band.start)}")
    for h in s.hooks:
        bar = _bar(h.start, h.start + h.duration, scale, width, _GLYPH.get(h.status, "="))
        detail = f" {h.detail}" if h.detail and h.status != "ok" else ""
        lines.append(
            f"   {'hook ' + h.name:<22}|{bar}| {h.status} {_seconds(h.duration)}{_fmt(detail)}"
        )
    if any(n for _, n in s.inflight):
        points = ", ".join(f"{n} at +{t:.3f}" for t, n in s.inflight[:8])
        more = ", ..." if len(s.inflight) > 8 else ""
        lines.append(f"   in flight: {points}{more}")
    lines.append("   events:")
    for t, ev in s.events:
        detail = " ".join(f"{k}={_fmt(v)}" for k, v in ev.fields.items() if k not in _HIDDEN)
        lines.append(f"   {t:+9.3f}  {ev.name:<28} {detail}".rstrip())
    lines.append(f"   verdict: {s.verdict}")
    lines.extend(f"   note: {n}" for n in s.notes)
    return "\n".join(lines)


def render_text(shutdowns: list[Shutdown], stats: ParseStats | None = None) -> str:
    """Every shutdown, one under the other, then what was skipped of the input."""
    parts = [render_shutdown_text(s) for s in shutdowns]
    if not shutdowns:
        parts.append("no shutdown found (no shutdown.started event)")
    if stats is not None:
        parts.append(f"input: {stats.summary()}")
    return "\n\n".join(parts) + "\n"
