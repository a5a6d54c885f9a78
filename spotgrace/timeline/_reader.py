"""Reading one shutdown's events in time order: phases, hook bars, the exit, the verdict."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from ._model import Band, HookBar, Mark, Shutdown
from ._parse import Event

__all__ = ["read_shutdown"]


def read_shutdown(s: Shutdown) -> None:
    """Fill in ``s`` (phases, hooks, marks, exit, verdict) from ``s.events``."""
    _Reader(s).read()


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
        self.killed = False  # spotgrace run SIGKILLed its child

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
        # deadline_at: on the axis of `elapsed` (from the signal, also when it was
        # read late). Older logs: deadline_in, measured when the notice was read.
        d = ev.number("deadline_at")
        if d is None:
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
            self.killed = True
            over = ev.number("overshoot") or 0.0
            s.marks.append(Mark(t, "supervisor SIGKILL", "watchdog"))
            s.problems.append(
                f"the child was still running at the deadline: the supervisor SIGKILLed "
                f"its process group at +{t:.2f} s ({over * 1000:.0f} ms late)"
            )
            return
        code = ev.fields.get("exit_code")
        stuck = ev.fields.get("stuck_hooks") or []
        stuck = [str(h) for h in stuck] if isinstance(stuck, list) else [str(stuck)]
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
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        sig = ev.fields.get("signal")
        pid = ev.fields.get("pid")
        if isinstance(pid, int):
            self.s.child_pid = pid
        if isinstance(sig, str) and sig:
            with contextlib.suppress(KeyError):
                code = 128 + signal.Signals[sig]
            self.s.child_exit = (t, code, f"ended by {sig}")
            why = f"child ended by {sig}"
        else:
            self.s.child_exit = (t, code, f"exited with code {code}")
            why = f"child exited with code {code}"
        if self.killed:
            self.s.child_exit = (t, code, "SIGKILLed by spotgrace run at the supervisor's deadline")
        self._exit(t, code, why)

    def on_run_exiting(self, t: float, ev: Event) -> None:
        code = ev.fields.get("exit_code")
        if isinstance(code, int) and not isinstance(code, bool):
            self.s.exit_code = code
            if code != 0:
                self.s.problems.append(f"spotgrace run exited with code {code}")

    def on_shutdown_exit(self, t: float, ev: Event) -> None:
        code = ev.fields.get("code", ev.fields.get("exit_code"))
        self._exit(t, code if isinstance(code, int) else None, str(ev.fields.get("why", "")))
        if isinstance(code, int) and code != 0 and self.s.exit_at == t:
            why = self.s.exit_why
            self.s.problems.append(
                f"it exited with code {code} at +{t:.2f} s" + (f": {why}" if why else "")
            )

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
        if s.exit_at is None and s.ended_by is not None:
            at, code, why = s.ended_by
            s.exit_at, s.exit_code, s.exit_why = max(at, s.end), code, why
            if self.finished is None:
                s.problems.append(f"{why} (+{at:.2f} s), before its shutdown finished")
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
        late = s.exit_why == "watchdog" or self.killed  # already said, with the overshoot
        if s.deadline is not None and end > s.deadline + 0.05 and not late:
            s.problems.append(f"it ended {end - s.deadline:.2f} s after its deadline")
        if s.kill_at is not None and end > s.kill_at + 0.05:
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
