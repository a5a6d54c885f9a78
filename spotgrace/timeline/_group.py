"""From events to shutdowns: one per process and notice, with who is who."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from ._model import Mark, Shutdown
from ._parse import SUPERVISOR_EVENTS, Event, number
from ._reader import read_shutdown

__all__ = ["group_shutdowns"]


def _role(event: Event) -> str:
    if event.name in SUPERVISOR_EVENTS:
        return "supervisor"
    f = event.fields
    if event.name == "shutdown.started" and "drain_delay" not in f and "inflight" not in f:
        return "supervisor"
    if event.name == "shutdown.deadline_exceeded" and f.get("action") == "SIGKILL":
        return "supervisor"
    if event.name == "shutdown.finished" and "killed" in f:
        return "supervisor"
    if event.name == "shutdown.deadline_moved" and "by" in f:
        return "supervisor"
    return "app"


def group_shutdowns(events: Iterable[Event]) -> tuple[list[Shutdown], int]:
    """Split ``events`` into shutdowns, ordered by notice time.

    Events are grouped by pid when they carry one; lines without a pid (the
    app's own structlog output) are grouped by who emitted them, the
    ``spotgrace run`` supervisor or the app. Within a group each
    ``shutdown.started`` begins a new shutdown. Returns the shutdowns and the
    number of events that belong to none (before any notice).
    """
    streams: dict[tuple[str, int | None], list[Event]] = {}
    for ev in events:
        key = ("pid", ev.pid) if ev.pid is not None else (_role(ev), None)
        streams.setdefault(key, []).append(ev)
    shutdowns: list[Shutdown] = []
    outside = 0
    for (kind, pid), evs in streams.items():
        evs.sort(key=lambda e: (e.at, e.line))
        current: list[Event] | None = None
        chunks: list[list[Event]] = []
        child: int | None = None  # from child.started, which comes before the notice
        children: list[int | None] = []
        for ev in evs:
            if ev.name == "child.started":
                value = ev.fields.get("pid")
                child = value if isinstance(value, int) else None
            if ev.name == "shutdown.started":
                current = [ev]
                chunks.append(current)
                children.append(child)
            elif current is None:
                outside += 1
            else:
                current.append(ev)
        for chunk, child_pid in zip(chunks, children, strict=True):
            role = "supervisor" if any(_role(e) == "supervisor" for e in chunk) else "app"
            if kind != "pid":
                role = kind
            s = _build(chunk, role, pid)
            s.child_pid = child_pid
            shutdowns.append(s)
    # Supervisors first: what they saw of their child (its exit, their SIGKILL)
    # goes into the child's picture and verdict.
    for s in shutdowns:
        if s.role == "supervisor":
            read_shutdown(s)
    pairs = _pair(shutdowns)
    for s in shutdowns:
        if s.role != "supervisor":
            read_shutdown(s)
    for app, kill in pairs:
        if app.deadline is not None and app.deadline > kill:
            app.notes.append(
                f"its deadline (+{app.deadline:.2f} s) is after spotgrace run's SIGKILL "
                f"(+{kill:.2f} s): give the app the same SPOTGRACE_STOP_TIMEOUT"
            )
    _name(shutdowns)
    shutdowns.sort(key=lambda s: (s.notice_at, s.role != "supervisor"))
    return shutdowns, outside


def _pair(shutdowns: list[Shutdown]) -> list[tuple[Shutdown, float]]:
    """Give each app under ``spotgrace run`` the supervisor's SIGKILL time and what it
    saw of the child's end, on the app's own axis. Returns (app, SIGKILL time) pairs.

    An app belongs to a supervisor when its pid is the supervisor's child's, or,
    when either pid is unknown, when its notice falls within the supervisor's
    shutdown. Apps are looked up by pid and by notice time (not by trying every
    app for every supervisor), so a log of thousands of shutdowns stays fast.
    """
    index = {id(s): i for i, s in enumerate(shutdowns)}
    apps = sorted((s for s in shutdowns if s.role == "app"), key=lambda s: s.notice_at)
    starts = [a.notice_at for a in apps]
    by_pid: dict[int, list[Shutdown]] = {}
    for app in apps:
        if app.pid is not None:
            by_pid.setdefault(app.pid, []).append(app)
    pairs = []
    for sup in shutdowns:
        if sup.role != "supervisor" or sup.deadline is None:
            continue
        end = sup.notice_at + sup.span
        window = apps[bisect_left(starts, sup.notice_at - 0.5) : bisect_right(starts, end)]
        if sup.child_pid is None:
            found = window
        else:
            found = by_pid.get(sup.child_pid, []) + [a for a in window if a.pid is None]
        for app in sorted(found, key=lambda a: index[id(a)]):
            shift = sup.notice_at - app.notice_at
            kill = sup.deadline + shift
            app.marks.append(Mark(kill, f"spotgrace run SIGKILL +{kill:.2f} s", "kill"))
            if sup.child_exit is not None:
                at, code, why = sup.child_exit
                app.ended_by = (at + shift, code, why)
            pairs.append((app, kill))
    return pairs


def _name(shutdowns: list[Shutdown]) -> None:
    """Say who is who: ``spotgrace run (supervisor of pid N)``, ``pid N (under spotgrace run)``."""
    children = {s.child_pid for s in shutdowns if s.role == "supervisor" and s.child_pid}
    for s in shutdowns:
        own = f"pid {s.pid}" if s.pid is not None else "no pid in the log"
        if s.role == "supervisor":
            child = f"supervisor of pid {s.child_pid}" if s.child_pid else "supervisor"
            s.process = f"spotgrace run ({child}; {own})"
        elif s.pid is not None and s.pid in children:
            s.process = f"pid {s.pid} (the app under spotgrace run)"
        else:
            s.process = f"pid {s.pid}" if s.pid is not None else "app (no pid in the log)"


def _build(chunk: list[Event], role: str, pid: int | None) -> Shutdown:
    first = chunk[0]
    f = first.fields
    offset = first.number("elapsed") or 0.0
    if not 0.0 <= offset <= first.at:
        offset = 0.0  # a corrupt elapsed would put the notice before 1970 or after the event
    notice_at = first.at - offset
    s = Shutdown(
        process="",
        role=role,
        pid=pid,
        notice_at=notice_at,
        source=str(f.get("source") or ""),
        reason=str(f.get("reason") or f.get("signal") or ""),
        stop_timeout=number(f.get("stop_timeout")),
        margin=number(f.get("margin")),
    )
    for ev in chunk:
        elapsed = ev.number("elapsed")
        t = elapsed if elapsed is not None else ev.at - notice_at
        s.events.append((t, ev))
    s.events.sort(key=lambda p: (p[0], p[1].line))
    return s
