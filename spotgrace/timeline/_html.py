"""The picture: one self-contained HTML page, an inline SVG per shutdown, no script.

Each shutdown gets its own time axis from its notice. When the deadline and
the platform's SIGKILL are far beyond the end (a 0.2 s shutdown with a 30 s
stop timeout), the axis is broken: the shutdown fills most of the width and
the deadline and SIGKILL stand to the right of a break mark.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape

from ._limits import MAX_DOTS, MAX_HOOK_ROWS, drawn, thin
from ._model import HookBar, Shutdown
from ._parse import ParseStats
from ._safe import clean_text

__all__ = ["render_html"]

WIDTH = 1000
X0, X1 = 190, WIDTH - 180
TOP = 56  # room for the labels of the vertical marks
BAND_H, HOOK_H, FLIGHT_H, AXIS_H = 28, 24, 70, 34

STATUS_COLOUR = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "timed out": "#ef6c00",
    "skipped": "#9e9e9e",
    "running": "#6a1b9a",
}
BAND_COLOUR = {"lame duck": "#ffe9a8", "drain": "#cfe3ff", "cleanup": "#e3d7f4"}
MARK_STYLE = {
    "notice": ("#37474f", ""),
    "deadline": ("#ef6c00", "6 4"),
    "kill": ("#b71c1c", ""),
    "exit": ("#111111", ""),
    "signal": ("#1565c0", "2 3"),
    "watchdog": ("#6a1b9a", "2 3"),
    "info": ("#78909c", "2 3"),
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f23;
background:#fff;margin:24px auto;max-width:1040px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 6px}
.meta{color:#57606a;margin:0 0 8px}
.verdict{padding:8px 12px;border-radius:6px;margin:6px 0 10px;font-weight:600}
.clean{background:#e8f5e9;border-left:6px solid #2e7d32}
.unclean{background:#fdecea;border-left:6px solid #c62828}
.note{background:#fff8e1;border-left:6px solid #ef6c00;padding:6px 12px;margin:6px 0}
svg{display:block;max-width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#1b1f23}
svg .lab{font-size:12px}svg .dim{fill:#57606a}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px;
border-radius:2px}
footer{color:#57606a;margin-top:28px;font-size:12px}
"""


def _clock(unix: float) -> str:
    try:
        when = datetime.fromtimestamp(unix, tz=UTC)
    except (ValueError, OverflowError, OSError):  # a corrupt time: no calendar date
        return f"Unix time {unix:.3f}"
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"


def _dur(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _nice_step(span: float, count: int = 6) -> float:
    raw = max(span, 1e-6) / count
    power = 10 ** math.floor(math.log10(raw))
    step: float = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step


class _Scale:
    """Seconds since the notice to x pixels; linear, or broken before the far marks."""

    def __init__(self, span: float, far: list[float]) -> None:
        span = max(span, 1e-3)
        self.broken = bool(far) and min(far) > 2.5 * span
        if self.broken:
            self.hi1 = span * 1.06
            lo, hi = min(far), max(far)
            pad = max((hi - lo) * 0.12, hi * 0.02)
            self.lo2, self.hi2 = lo - pad, hi + pad * 0.6
            self.split = X0 + 0.78 * (X1 - X0)
            self.resume = X0 + 0.86 * (X1 - X0)
        else:
            self.hi1 = max([span, *far]) * 1.04
            self.lo2 = self.hi2 = self.hi1
            self.split = self.resume = X1

    def __call__(self, t: float) -> float:
        t = max(0.0, t)
        if t <= self.hi1:
            return X0 + (self.split - X0) * t / self.hi1
        if not self.broken:
            return X1
        if t < self.lo2:
            return self.split + (self.resume - self.split) * (t - self.hi1) / (self.lo2 - self.hi1)
        return self.resume + (X1 - self.resume) * min(1.0, (t - self.lo2) / (self.hi2 - self.lo2))

    def ticks(self) -> list[float]:
        step = _nice_step(self.hi1)
        return [i * step for i in range(int(self.hi1 / step) + 1)]


def _text(x: float, y: float, body: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(body)}</text>'


def _marks(s: Shutdown) -> list[tuple[float, str, str]]:
    marks = [(0.0, "notice", "notice")]
    if s.deadline is not None:
        marks.append((s.deadline, f"deadline +{s.deadline:.2f} s", "deadline"))
    if s.kill_at is not None:
        what = "est. SIGKILL" if s.kill_estimated else "platform SIGKILL"
        marks.append((s.kill_at, f"{what} +{s.kill_at:.2f} s", "kill"))
    if s.exit_at is not None:
        code = "?" if s.exit_code is None else s.exit_code
        why = f" ({s.exit_why})" if s.exit_why in ("watchdog",) else ""
        marks.append((s.exit_at, f"exit {code}{why} +{s.exit_at:.2f} s", "exit"))
    elif s.finished_at is not None:
        marks.append((s.finished_at, f"finished +{s.finished_at:.2f} s", "exit"))
    marks.extend((m.at, m.label, m.kind) for m in s.marks)
    return marks


def _draw_marks(s: Shutdown, x: Callable[[float], float], bottom: float) -> list[str]:
    out: list[str] = []
    levels: list[float] = [-1e9, -1e9, -1e9]
    marks = sorted(_marks(s), key=lambda m: x(m[0]))
    lines = [x(m[0]) for m in marks]
    for t, label, kind in marks:
        px = x(t)
        colour, dash = MARK_STYLE.get(kind, MARK_STYLE["info"])
        width = 6.2 * len(label)

        def crosses(a: float, b: float, px: float = px) -> bool:
            return any(a < other < b and abs(other - px) > 1 for other in lines)

        # Right of the line, unless that runs off the page or across another mark's line.
        left = px + 3 + width > WIDTH - 4 or (
            crosses(px + 3, px + 3 + width) and not crosses(px - 3 - width, px - 3)
        )
        start = px - 3 - width if left else px + 3
        level = next((i for i, end in enumerate(levels) if start > end + 4), len(levels) - 1)
        levels[level] = start + width
        y = 16 + 14 * level
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{px:.1f}" y1="{y + 3}" x2="{px:.1f}" y2="{bottom:.1f}" '
            f'stroke="{colour}" stroke-width="{2 if kind in ("deadline", "kill", "exit") else 1}"'
            f"{dash_attr}><title>{escape(label)}</title></line>"
        )
        anchor = "end" if left else "start"
        out.append(
            f'<text x="{px + (-3 if left else 3):.1f}" y="{y}" text-anchor="{anchor}" '
            f'style="fill:{colour}">{escape(label)}</text>'
        )
    return out


def _hook_row(h: HookBar, x: Callable[[float], float], y: float) -> list[str]:
    colour = STATUS_COLOUR.get(h.status, "#555")
    tip = f"{h.name}: {h.status}, {_dur(h.duration)}"
    if h.timeout is not None:
        tip += f", limit {h.timeout:g} s"
    if h.detail:
        tip += f" ({h.detail})"
    name = h.name if len(h.name) <= 26 else h.name[:25] + "…"
    out = [_text(X0 - 8, y + 15, name, anchor="end", cls="lab")]
    x0 = x(h.start)
    if h.status == "skipped":
        cy = y + HOOK_H / 2
        out.append(
            f'<path d="M{x0:.1f} {cy - 7:.1f}l7 7l-7 7l-7 -7z" fill="#fff" stroke="{colour}" '
            f'stroke-width="2"><title>{escape(tip)}</title></path>'
        )
    else:
        w = max(2.5, x(h.start + h.duration) - x0)
        out.append(
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{w:.1f}" height="{HOOK_H - 8}" rx="2" '
            f'fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
    label = f"{h.status} · {_dur(h.duration)}"
    out.append(_text(X1 + 10, y + 15, label, cls="lab"))
    return out


def _inflight(s: Shutdown, x: Callable[[float], float], y: float, end: float) -> list[str]:
    points = thin(sorted(s.inflight))
    peak = max(n for _, n in points)
    top = peak or 1
    base = y + FLIGHT_H - 8

    def py(n: int) -> float:
        return base - (FLIGHT_H - 20) * n / top

    path = [f"M{x(points[0][0]):.1f} {base:.1f}"]
    for i, (t, n) in enumerate(points):
        path.append(f"L{x(t):.1f} {py(points[i - 1][1] if i else 0):.1f}")
        path.append(f"L{x(t):.1f} {py(n):.1f}")
    last = points[-1][1]
    path.append(f"L{x(max(end, points[-1][0])):.1f} {py(last):.1f}")
    area = " ".join(path) + f" L{x(max(end, points[-1][0])):.1f} {base:.1f} Z"
    out = [
        _text(X0 - 8, y + 22, "in flight", anchor="end", cls="lab"),
        _text(X0 - 8, y + 36, f"max {peak}", anchor="end", cls="dim"),
        f'<line x1="{X0}" y1="{base:.1f}" x2="{X1}" y2="{base:.1f}" stroke="#d0d7de"/>',
        f'<path d="{area}" fill="#1565c0" fill-opacity="0.15" stroke="#1565c0" '
        'stroke-width="1.5"/>',
    ]
    for t, n in points if len(points) <= MAX_DOTS else ():
        out.append(
            f'<circle cx="{x(t):.1f}" cy="{py(n):.1f}" r="2.5" fill="#1565c0">'
            f"<title>{n} in flight at +{t:.3f} s</title></circle>"
        )
    if peak:
        out.append(_text(X0 + 2, py(top) - 3, str(top), cls="dim"))
    return out


def render_shutdown_svg(s: Shutdown) -> str:
    """The SVG of one shutdown."""
    far = [t for t in (s.deadline, s.kill_at) if t is not None]
    x = _Scale(s.span, far)
    body: list[str] = []
    y = TOP
    if s.role == "supervisor":
        body.extend(_child_row(s, x, y))
        y += HOOK_H + 8
    else:
        body.extend(_phases(s, x, y))
        y += BAND_H
        if not s.hooks:
            body.append(_text(X0 + 4, y + 15, "no cleanup hook ran", cls="dim"))
            y += HOOK_H
    for i, h in enumerate(s.hooks[:MAX_HOOK_ROWS]):
        if i % 2 == 0:
            body.append(
                f'<rect x="{X0 - 180}" y="{y}" width="{WIDTH - 10}" height="{HOOK_H}" '
                'fill="#f6f8fa"/>'
            )
        body.extend(_hook_row(h, x, y))
        y += HOOK_H
    if len(s.hooks) > MAX_HOOK_ROWS:
        more = len(s.hooks) - MAX_HOOK_ROWS
        body.append(_text(X0 + 4, y + 15, f"{more} more hooks: see the text timeline", cls="dim"))
        y += HOOK_H
    end = s.exit_at if s.exit_at is not None else s.span
    if any(n for _, n in s.inflight):  # a row of zeros says nothing
        body.extend(_inflight(s, x, y, end))
        y += FLIGHT_H
    body.extend(_axis(x, y))
    marks = _draw_marks(s, x, y)
    height = y + AXIS_H
    title = f"Shutdown of {s.process}: {s.verdict}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="{WIDTH}" height="{height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "".join(marks) + "</svg>"
    )


def _child_row(s: Shutdown, x: Callable[[float], float], y: float) -> list[str]:
    """``spotgrace run``: one bar for its child, from the notice to the child's end."""
    who = f"child pid {s.child_pid}" if s.child_pid else "child"
    out = [_text(X0 - 8, y + 15, who, anchor="end", cls="lab")]
    if s.child_exit is None:
        out.append(_text(X0 + 4, y + 15, "the child's end is not in the log", cls="dim"))
        return out
    at, code, why = s.child_exit
    status = "ok" if code == 0 else "running" if "SIGKILL" in why else "failed"
    out.append(
        f'<rect x="{X0}" y="{y + 4}" width="{max(2.5, x(at) - X0):.1f}" height="{HOOK_H - 8}" '
        f'rx="2" fill="{STATUS_COLOUR[status]}"><title>{escape(f"the child {why}")}</title></rect>'
    )
    out.append(_text(X1 + 10, y + 15, f"exit {code} · {_dur(at)}", cls="lab"))
    return out


def _phases(s: Shutdown, x: Callable[[float], float], y: float) -> list[str]:
    body = [_text(X0 - 8, y + 18, "phases", anchor="end", cls="lab")]
    for band in s.bands:
        bx, bw = x(band.start), max(2.0, x(band.end) - x(band.start))
        tip = (
            f"{band.name}: +{band.start:.3f} s to +{band.end:.3f} s ({_dur(band.end - band.start)})"
        )
        if band.open_ended:
            tip += ", not finished"
        colour = BAND_COLOUR.get(band.name, "#eee")
        body.append(
            f'<rect x="{bx:.1f}" y="{y + 3}" width="{bw:.1f}" height="{BAND_H - 6}" '
            f'fill="{colour}" stroke="#8c959f" stroke-width="0.5"><title>{escape(tip)}</title></rect>'
        )
        if bw > 6.5 * len(band.name) + 8:
            body.append(_text(bx + bw / 2, y + 18, band.name, anchor="middle"))
    return body


def _axis(x: _Scale, y: float) -> list[str]:
    out = [f'<line x1="{X0}" y1="{y:.1f}" x2="{X1}" y2="{y:.1f}" stroke="#57606a"/>']
    unit_ms = x.hi1 < 1.5
    for t in x.ticks():
        px = x(t)
        if px > x.split + 0.5:
            break
        label = f"{t * 1000:g} ms" if unit_ms and t < 1 else f"{t:g} s"
        out.append(
            f'<line x1="{px:.1f}" y1="{y:.1f}" x2="{px:.1f}" y2="{y + 5:.1f}" stroke="#57606a"/>'
        )
        out.append(_text(px, y + 18, label, anchor="middle", cls="dim"))
    if x.broken:
        mid = (x.split + x.resume) / 2
        out.append(
            f'<rect x="{x.split + 4:.1f}" y="{y - 6:.1f}" width="{x.resume - x.split - 8:.1f}" height="12" fill="#fff"/>'
        )
        for dx in (-4, 4):
            out.append(
                f'<line x1="{mid + dx - 4:.1f}" y1="{y + 6:.1f}" x2="{mid + dx + 4:.1f}" '
                f'y2="{y - 6:.1f}" stroke="#57606a" stroke-width="1.5"/>'
            )
        out.append(_text(mid, y + 18, "…", anchor="middle", cls="dim"))
    out.append(_text(X1 + 10, y + 18, "time since notice", cls="dim"))
    return out


def _legend() -> str:
    items = [
        f'<span><i style="background:{c}"></i>{escape(n)}</span>' for n, c in BAND_COLOUR.items()
    ]
    items += [
        f'<span><i style="background:{c}"></i>hook {escape(n)}</span>'
        for n, c in STATUS_COLOUR.items()
    ]
    return '<p class="legend">' + "".join(items) + "</p>"


def render_html(
    shutdowns: list[Shutdown], stats: ParseStats | None = None, *, title: str = "Shutdown timeline"
) -> str:
    """The whole page: every shutdown one under the other, with its verdict."""
    title = clean_text(title)  # from a command line: may hold undecodable bytes
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    clean = sum(1 for s in shutdowns if s.clean)
    summary = f"{len(shutdowns)} shutdown{'s' if len(shutdowns) != 1 else ''}, {clean} clean"
    if stats is not None:
        summary += f" · input: {stats.summary()}"
    chosen = drawn(shutdowns)
    if len(chosen) < len(shutdowns):
        summary += (
            f" · {len(chosen)} drawn (those not clean first), the others with their "
            "verdict only: see the text timeline"
        )
    parts.append(f'<p class="meta">{escape(summary)}</p>')
    if not shutdowns:
        parts.append(
            "<p>No shutdown found: the input has no <code>shutdown.started</code> event.</p>"
        )
    first = shutdowns[0].notice_at if shutdowns else 0.0
    for index, s in enumerate(shutdowns):
        offset = s.notice_at - first
        when = _clock(s.notice_at) + (f" (+{offset:.2f} s after the first)" if offset > 0 else "")
        why = f"{s.source}: {s.reason}" if s.reason else s.source
        parts.append(f"<section><h2>{escape(s.process)}</h2>")
        parts.append(f'<p class="meta">notice at {escape(when)} · {escape(why)}</p>')
        klass = "clean" if s.clean else "unclean"
        parts.append(f'<p class="verdict {klass}">{escape(s.verdict)}</p>')
        parts.extend(f'<p class="note">Note: {escape(n)}</p>' for n in s.notes)
        parts.append((render_shutdown_svg(s) if index in chosen else "") + "</section>")
    parts.append(_legend())
    parts.append("<footer>made by <code>spotgrace timeline</code></footer></body></html>")
    return "\n".join(parts) + "\n"
