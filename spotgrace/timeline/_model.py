"""From events to shutdowns: grouping, phases, hook bars, the exit and the verdict.

Times in a :class:`Shutdown` are seconds since its notice (``shutdown.started``).
Events after the notice carry ``elapsed`` on the emitting process's monotonic
clock; that is used when present, the event's wall time otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._parse import SUPERVISOR_EVENTS, Event, number

__all__ = ["Band", "HookBar", "Mark", "Shutdown", "group_shutdowns"]


@dataclass(frozen=True)
class Band:
    """A phase of the shutdown: ``lame duck``, ``drain`` or ``cleanup``."""

    name: str
    start: float
    end: float
    open_ended: bool = False


@dataclass(frozen=True)
class HookBar:
    """One cleanup hook: when it started, how long it ran and how it ended."""

    name: str
    start: float
    duration: float
    status: str  # "ok", "failed", "timed out", "skipped", "running"
    timeout: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Mark:
    """A moment worth a vertical line: deadline, SIGKILL, exit, a second signal..."""

    at: float
    label: str
    kind: str  # "deadline", "kill", "exit", "signal", "watchdog", "info"


@dataclass
class Shutdown:
    """One process's shutdown, read back from its events."""

    process: str
    role: str  # "app" or "supervisor"
    pid: int | None
    notice_at: float  # Unix time of the notice
    source: str = ""
    reason: str = ""
    stop_timeout: float | None = None
    margin: float | None = None
    deadline: float | None = None
    kill_at: float | None = None
    kill_estimated: bool = False
    bands: list[Band] = field(default_factory=list)
    hooks: list[HookBar] = field(default_factory=list)
    inflight: list[tuple[float, int]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    exit_at: float | None = None
    exit_code: int | None = None
    exit_why: str = ""
    finished_at: float | None = None
    end: float = 0.0
    clean: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    events: list[tuple[float, Event]] = field(default_factory=list)
    child_pid: int | None = None

    @property
    def span(self) -> float:
        """The latest time anything in this shutdown is known to have happened."""
        ends = [self.end, *(h.start + h.duration for h in self.hooks)]
        return max(ends)


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
            s.child_pid = s.child_pid or child_pid
            shutdowns.append(s)
    _name(shutdowns)
    _pair(shutdowns)
    shutdowns.sort(key=lambda s: (s.notice_at, s.role != "supervisor"))
    return shutdowns, outside


def _pair(shutdowns: list[Shutdown]) -> None:
    """Mark the supervisor's SIGKILL on its child's axis, and a child deadline beyond it."""
    for sup in shutdowns:
        if sup.role != "supervisor" or sup.deadline is None:
            continue
        end = sup.notice_at + sup.span
        for app in shutdowns:
            if app.role != "app":
                continue
            if sup.child_pid is not None and app.pid is not None:
                if app.pid != sup.child_pid:
                    continue
            elif not sup.notice_at - 0.5 <= app.notice_at <= end:
                continue
            kill = sup.notice_at + sup.deadline - app.notice_at
            app.marks.append(Mark(kill, f"spotgrace run SIGKILL +{kill:.2f} s", "kill"))
            if app.deadline is not None and app.deadline > kill:
                app.notes.append(
                    f"its deadline (+{app.deadline:.2f} s) is after spotgrace run's SIGKILL "
                    f"(+{kill:.2f} s): give the app the same SPOTGRACE_STOP_TIMEOUT"
                )


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
    _Reader(s).read()
    return s


class _Reader:
    """Walks one shutdown's events in time order and fills in the Shutdown."""

    def __init__(self, s: Shutdown) -> None:
        self.s = s
        self.sigterm_at: float | None = None
        self.stopping_at: float | None = None
        self.drain: tuple[float, float | None] | None = None
        self.cleanup_at: float | None = None
        self.finished: dict[str, Any] | None = None
        self.finished_at: float | None = None
        self.open_hooks: dict[str, tuple[float, float | None]] = {}
        self.hooks_expected: int | None = None

    def read(self) -> None:
        for t, ev in self.s.events:
            handler = getattr(self, "on_" + ev.name.replace(".", "_"), None)
            if handler is not None:
                handler(t, ev)
            self.s.end = max(self.s.end, t)
        self.close()

    # ------------------------------------------------------------------ events

    def on_shutdown_started(self, t: float, ev: Event) -> None:
        s = self.s
        # deadline_in was measured at the notice itself (elapsed 0), not at `t`.
        d = ev.number("deadline_in")
        if d is not None:
            s.deadline = d
        if ev.fields.get("signal"):
            self.sigterm_at = 0.0
        if ev.number("drain_delay") == 0:
            self.stopping_at = 0.0  # no lame duck: intake stops at the notice
        self._inflight(t, ev)

    def on_shutdown_deadline_moved(self, t: float, ev: Event) -> None:
        d = ev.number("deadline_in")
        if d is not None:
            self.s.deadline = t + d
            self.s.marks.append(Mark(t, f"deadline moved to +{t + d:.3f} s", "info"))

    def on_shutdown_signal(self, t: float, ev: Event) -> None:
        if self.sigterm_at is None:
            self.sigterm_at = t
        self.s.marks.append(Mark(t, f"{ev.fields.get('signal', 'signal')} received", "signal"))

    def on_shutdown_stopping(self, t: float, ev: Event) -> None:
        if self.stopping_at is None:
            self.stopping_at = t
        self._inflight(t, ev)

    def on_drain_started(self, t: float, ev: Event) -> None:
        self.drain = (t, None)
        self._inflight(t, ev)

    def on_drain_progress(self, t: float, ev: Event) -> None:
        self._inflight(t, ev)

    def on_drain_finished(self, t: float, ev: Event) -> None:
        start = self.drain[0] if self.drain else t - (ev.number("duration") or 0.0)
        self.drain = (start, t)
        if not self.s.inflight or self.s.inflight[-1][1] != 0:
            self.s.inflight.append((t, 0))

    def on_drain_timeout(self, t: float, ev: Event) -> None:
        start = self.drain[0] if self.drain else t - (ev.number("duration") or 0.0)
        self.drain = (start, t)
        self._inflight(t, ev)
        n = ev.fields.get("inflight", "?")
        took = ev.number("duration") or t - start
        self.s.problems.append(
            f"the drain gave up after {took:.2f} s with {n} still in flight "
            f"({ev.fields.get('cancelled', 0)} cancelled)"
        )
        self.s.marks.append(Mark(t, "drain timed out", "watchdog"))

    def on_cleanup_started(self, t: float, ev: Event) -> None:
        self.cleanup_at = t
        n = ev.fields.get("hooks")
        self.hooks_expected = n if isinstance(n, int) and not isinstance(n, bool) else None

    def on_hook_started(self, t: float, ev: Event) -> None:
        self.open_hooks[str(ev.fields.get("hook"))] = (t, ev.number("timeout"))

    def _end_hook(self, t: float, ev: Event, status: str, detail: str = "") -> None:
        name = str(ev.fields.get("hook"))
        start, limit = self.open_hooks.pop(name, (None, None))
        took = ev.number("duration")
        if took is None:
            took = 0.0 if start is None else max(0.0, t - start)
        if start is None:
            start = t - took
        limit = ev.number("timeout") or limit
        self.s.hooks.append(HookBar(name, start, took, status, limit, detail))

    def on_hook_finished(self, t: float, ev: Event) -> None:
        self._end_hook(t, ev, "ok")

    def on_hook_failed(self, t: float, ev: Event) -> None:
        error = str(ev.fields.get("error", ""))
        self._end_hook(t, ev, "failed", error)
        took = self.s.hooks[-1].duration
        self.s.problems.append(f"hook {self.s.hooks[-1].name} failed after {took:.3f} s: {error}")

    def on_hook_timeout(self, t: float, ev: Event) -> None:
        self._end_hook(t, ev, "timed out")
        bar = self.s.hooks[-1]
        limit = f" (limit {bar.timeout:g} s)" if bar.timeout is not None else ""
        self.s.problems.append(f"hook {bar.name} timed out after {bar.duration:.3f} s{limit}")

    def on_hook_skipped(self, t: float, ev: Event) -> None:
        why = str(ev.fields.get("why", ""))
        name = str(ev.fields.get("hook"))
        self.s.hooks.append(HookBar(name, t, 0.0, "skipped", None, why))
        self.s.problems.append(f"hook {name} skipped: {why or 'no reason given'}")

    def on_shutdown_finished(self, t: float, ev: Event) -> None:
        self.finished = dict(ev.fields)
        self.finished_at = self.s.finished_at = t

    def on_shutdown_deadline_exceeded(self, t: float, ev: Event) -> None:
        s = self.s
        if ev.fields.get("action") == "SIGKILL":  # the supervisor kills the child's group
            over = ev.number("overshoot") or 0.0
            s.marks.append(Mark(t, "supervisor SIGKILL", "watchdog"))
            s.problems.append(
                f"the child was still running at the deadline: the supervisor SIGKILLed "
                f"its process group at +{t:.2f} s ({over * 1000:.0f} ms late)"
            )
            return
        code = ev.fields.get("exit_code")
        stuck = ev.fields.get("stuck_hooks") or []
        n = ev.fields.get("inflight", 0)
        what = ", ".join(f"hook {h}" for h in stuck) if stuck else ""
        if n:
            what = (what + ", " if what else "") + f"{n} in flight"
        s.problems.append(
            f"the watchdog ended the process at its deadline (+{t:.2f} s, exit code {code})"
            + (f"; still running: {what}" if what else "")
        )
        self._exit(t, code, "watchdog")
        self._inflight(t, ev)

    def on_signal_escalated(self, t: float, ev: Event) -> None:
        sig = ev.fields.get("signal", "a signal")
        code = ev.fields.get("exit_code")
        state = ev.fields.get("state", "?")
        self.s.marks.append(Mark(t, f"second signal ({sig})", "signal"))
        self.s.problems.append(
            f"a second signal ({sig}) ended the process at +{t:.2f} s while {state}, "
            f"exit code {code}"
        )
        self._exit(t, code, f"second signal {sig}")

    def on_signal_ignored(self, t: float, ev: Event) -> None:
        sig = ev.fields.get("signal", "a signal")
        self.s.marks.append(Mark(t, f"{sig} ignored", "signal"))

    def on_signal_forwarded(self, t: float, ev: Event) -> None:
        sig = ev.fields.get("signal", "a signal")
        self.s.marks.append(Mark(t, f"{sig} to the child", "signal"))
        pid = ev.fields.get("pid")
        if isinstance(pid, int):
            self.s.child_pid = pid

    def on_child_exited(self, t: float, ev: Event) -> None:
        code = ev.fields.get("exit_code")
        sig = ev.fields.get("signal")
        pid = ev.fields.get("pid")
        if isinstance(pid, int):
            self.s.child_pid = pid
        why = f"child ended by {sig}" if sig else f"child exited with code {code}"
        self._exit(t, code if isinstance(code, int) else None, why)

    def on_run_exiting(self, t: float, ev: Event) -> None:
        code = ev.fields.get("exit_code")
        if isinstance(code, int) and not isinstance(code, bool):
            self.s.exit_code = code
            if code != 0:
                self.s.problems.append(f"spotgrace run exited with code {code}")

    def on_shutdown_exit(self, t: float, ev: Event) -> None:
        code = ev.fields.get("code", ev.fields.get("exit_code"))
        self._exit(t, code if isinstance(code, int) else None, str(ev.fields.get("why", "")))
        if isinstance(code, int) and code != 0 and not self.s.problems:
            self.s.problems.append(f"the process exited with code {code}")

    # ------------------------------------------------------------------ helpers

    def _exit(self, t: float, code: Any, why: str) -> None:
        if self.s.exit_at is None:
            self.s.exit_at = t
            self.s.exit_code = (
                code if isinstance(code, int) and not isinstance(code, bool) else None
            )
            self.s.exit_why = why

    def _inflight(self, t: float, ev: Event) -> None:
        n = ev.fields.get("inflight")
        if isinstance(n, int) and not isinstance(n, bool):
            if self.s.inflight and self.s.inflight[-1][1] == n:
                return  # the same count again: no new point
            self.s.inflight.append((t, n))

    def close(self) -> None:
        s = self.s
        end = s.exit_at if s.exit_at is not None else s.end
        if s.stop_timeout is not None:
            if self.sigterm_at is not None:
                s.kill_at = self.sigterm_at + s.stop_timeout
            elif s.deadline is not None and s.margin is not None:
                s.kill_at, s.kill_estimated = s.deadline + s.margin, True
        for name, (start, limit) in self.open_hooks.items():
            s.hooks.append(HookBar(name, start, max(0.0, end - start), "running", limit))
            if not any(f"hook {name}" in p for p in s.problems):
                s.problems.append(f"hook {name} was still running at +{end:.2f} s")
        s.hooks.sort(key=lambda h: h.start)
        if self.hooks_expected is not None and len(s.hooks) < self.hooks_expected:
            missing = self.hooks_expected - len(s.hooks)
            s.problems.append(f"{missing} of {self.hooks_expected} hooks never ran")
        self._bands(end)
        self._verdict(end)

    def _bands(self, end: float) -> None:
        s = self.s
        stop = self.stopping_at
        if stop is not None and stop > 0:
            s.bands.append(Band("lame duck", 0.0, stop))
        elif stop is None and s.role == "app":
            s.bands.append(Band("lame duck", 0.0, end, open_ended=True))
        if self.drain is not None:
            d_start = stop if stop is not None else self.drain[0]
            d_end = self.drain[1]
            s.bands.append(
                Band("drain", d_start, d_end if d_end is not None else end, d_end is None)
            )
        if self.cleanup_at is not None:
            c_end = self.finished_at if self.finished_at is not None else end
            s.bands.append(Band("cleanup", self.cleanup_at, c_end, self.finished_at is None))

    def _verdict(self, end: float) -> None:
        s = self.s
        fin = self.finished
        if s.role == "supervisor":
            done = s.exit_at is not None
        else:
            done = fin is not None or s.exit_at is not None
        if not done:
            last = s.events[-1][1].name if s.events else "?"
            s.problems.append(
                f"the events stop at +{end:.2f} s (last: {last}): the process was killed "
                "(SIGKILL) or its log was cut off"
            )
        if fin is not None and fin.get("clean") is False and not s.problems:
            s.problems.append("shutdown.finished says clean=false")
        if s.deadline is not None and end > s.deadline + 0.001 and s.exit_why != "watchdog":
            s.problems.append(f"it ended {end - s.deadline:.2f} s after its deadline")
        if s.kill_at is not None and end > s.kill_at:
            s.problems.append(
                f"it ran {end - s.kill_at:.2f} s past the platform's SIGKILL: it was killed"
            )
        s.clean = not s.problems
        if s.problems:
            s.verdict = "NOT CLEAN: " + "; ".join(s.problems)
            return
        parts = [f"finished {end:.3f} s after the notice"]
        if s.deadline is not None:
            parts.append(f"{s.deadline - end:.2f} s before its deadline")
        if s.kill_at is not None:
            est = " (estimated)" if s.kill_estimated else ""
            parts.append(f"{s.kill_at - end:.2f} s before the platform's SIGKILL{est}")
        if s.exit_code is not None:
            parts.append(f"exit code {s.exit_code}")
        s.verdict = "CLEAN: " + ", ".join(parts)
