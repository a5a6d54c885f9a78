"""``spotgrace simulate``: rehearse a Spot interruption of any command, locally.

::

    spotgrace simulate --interrupt-after 5 --stop-timeout 30 -- python app.py

It starts the fake endpoints (:mod:`spotgrace.testing`) and runs the command
with the ``ECS_*`` / ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` variables pointing
at them, the directory of the running Python first on ``PATH`` (so that
``python`` means this interpreter and its virtual environment),
``SPOTGRACE_STOP_TIMEOUT`` set (unless already set) and
``SPOTGRACE_EVENTS_FILE`` naming a file where spotgrace in the app writes its
events. Then it does what ECS does: at ``--interrupt-after`` the task metadata
says ``DesiredStatus: STOPPED`` and IMDS answers ``spot/instance-action``;
``--warning`` seconds later it sends SIGTERM to the process (PID 1 in a
container); ``--stop-timeout`` seconds after that it SIGKILLs the whole
process group. It prints the timeline of what the app did and a verdict; the
exit status is 0 for a clean exit before the kill, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .._core._eventlog import EVENTS_FILE_ENV
from .._graceful._verdict import EXIT_INCOMPLETE

__all__ = ["add_parser", "simulate"]

#: Event fields not worth a column in the timeline.
_HIDDEN = frozenset({"ts", "pid", "level", "event", "timestamp", "logger", "stacks", "statistics"})


@dataclass
class Outcome:
    """What happened, for the verdict."""

    returncode: int | None = None
    exited_at: float | None = None
    sigterm_at: float | None = None
    killed_at: float | None = None
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def add_parser(subparsers: Any) -> None:
    """Register ``simulate`` on the ``spotgrace`` command line."""
    p = subparsers.add_parser(
        "simulate",
        help="rehearse a Spot interruption of a command and judge its shutdown",
        description=(
            "Run COMMAND with fake ECS/EC2 metadata endpoints, flip them to 'interrupted' "
            "after --interrupt-after seconds, send SIGTERM like ECS does, SIGKILL after "
            "--stop-timeout, then print the app's shutdown timeline and a verdict "
            "(exit status 0 = clean)."
        ),
        epilog="example: spotgrace simulate --interrupt-after 5 --stop-timeout 30 "
        "-- python examples/worker_app.py",
    )
    p.add_argument(
        "--interrupt-after",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds after the start until the interruption (default 5)",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds from SIGTERM to SIGKILL, as ECS stopTimeout (default 30)",
    )
    p.add_argument(
        "--warning",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between the metadata notice and SIGTERM (default 0, as on "
        "Fargate; EC2 Spot gives up to 120)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="also set SPOTGRACE_WATCH=ecs,ec2 for the app (early warning)",
    )
    p.add_argument("--quiet", action="store_true", help="do not show the app's own output")
    p.add_argument(
        "--html", metavar="FILE", help="also write the timeline picture of the app's shutdown"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("spotgrace simulate: give the command to run after --", file=sys.stderr)
        return 2
    for name in ("interrupt_after", "stop_timeout", "warning"):
        value = getattr(args, name)
        if not value >= 0 or (name == "stop_timeout" and value == 0):
            print(f"spotgrace simulate: --{name.replace('_', '-')} must be > 0", file=sys.stderr)
            return 2
    try:
        from ..testing import FakeEndpoints  # noqa: F401 - the fakes need the extra
    except ImportError as exc:  # a core install: one line, not a traceback
        print(f"spotgrace simulate: {exc}", file=sys.stderr)
        return 2
    return simulate(
        command,
        interrupt_after=args.interrupt_after,
        stop_timeout=args.stop_timeout,
        warning=args.warning,
        watch=args.watch,
        quiet=args.quiet,
        html=args.html,
    )


def _pump(stream: TextIO, out: TextIO, quiet: bool) -> None:
    for line in stream:
        if not quiet:
            out.write("  app | " + line)
            out.flush()


def simulate(
    command: list[str],
    *,
    interrupt_after: float = 5.0,
    stop_timeout: float = 30.0,
    warning: float = 0.0,
    watch: bool = False,
    quiet: bool = False,
    out: TextIO = sys.stdout,
    html: str | None = None,
) -> int:
    """Run ``command`` through one rehearsed interruption; print the timeline and verdict."""
    from ..testing import FakeEndpoints

    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="spotgrace-sim-") as tmp, FakeEndpoints() as fake:
        events_path = Path(tmp) / "events.jsonl"
        env = {**os.environ, **fake.env(), EVENTS_FILE_ENV: str(events_path)}
        env.setdefault("SPOTGRACE_STOP_TIMEOUT", f"{stop_timeout:g}")
        env["PYTHONUNBUFFERED"] = "1"
        # `python` in the command means the interpreter running simulate (its venv).
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")]).rstrip(os.pathsep)
        if watch:
            env.setdefault("SPOTGRACE_WATCH", "ecs,ec2")
            env.setdefault("SPOTGRACE_WATCH_INTERVAL", "1")
        start = time.time()

        def note(text: str, at: float | None = None) -> None:
            at = time.time() if at is None else at  # `at`: taken just before the action
            outcome.timeline.append((at, "simulate", text))
            out.write(f"[simulate +{at - start:6.2f}s] {text}\n")
            out.flush()

        note(f"starting {' '.join(command)} (fake ECS/EC2 endpoints on {fake.url})")
        try:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,  # its own group: the SIGKILL takes it all
            )
        except OSError as exc:
            print(f"spotgrace simulate: cannot run {command[0]!r}: {exc}", file=sys.stderr)
            return 2
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, out, quiet), daemon=True)
        pump.start()
        try:
            _drive(proc, fake, outcome, note, interrupt_after, stop_timeout, warning)
        except KeyboardInterrupt:
            _kill_group(proc)
            note("interrupted (Ctrl-C): the app was killed")
            proc.wait()
            return 130
        finally:
            pump.join(5.0)
            proc.stdout.close()
        outcome.events = _read_events(events_path)
        if html is not None:
            _picture(events_path, html, note, outcome, proc.pid)
    return _report(outcome, start, stop_timeout, out)


def _drive(
    proc: subprocess.Popen[str],
    fake: Any,
    outcome: Outcome,
    note: Any,
    interrupt_after: float,
    stop_timeout: float,
    warning: float,
) -> None:
    def wait(seconds: float) -> bool:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        outcome.returncode, outcome.exited_at = proc.returncode, time.time()
        note(f"the app exited with {_describe_code(proc.returncode)}")
        return True

    if wait(interrupt_after):
        return
    at = time.time()
    fake.interrupt(warning=warning + stop_timeout)
    note(
        "interruption: task metadata DesiredStatus=STOPPED, IMDS spot/instance-action "
        f"terminate in {warning + stop_timeout:g}s",
        at,
    )
    if warning > 0 and wait(warning):
        return
    outcome.sigterm_at = time.time()
    os.kill(proc.pid, signal.SIGTERM)
    note(
        f"SIGTERM sent to pid {proc.pid} (as ECS does); SIGKILL in {stop_timeout:g}s",
        outcome.sigterm_at,
    )
    if wait(stop_timeout):
        _kill_group(proc)  # like the container runtime: nothing outlives PID 1
        return
    outcome.killed_at = time.time()
    _kill_group(proc)
    note("stop timeout reached: SIGKILL sent to the process group (as ECS does)", outcome.killed_at)
    proc.wait()
    outcome.returncode = proc.returncode


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("ts"), int | float):
            events.append(doc)
    return events


def _picture(events_path: Path, html: str, note: Any, outcome: Outcome, pid: int) -> None:
    """``--html``: the app's events, and its exit as simulate saw it, as a timeline picture."""
    from ..timeline import write_html

    try:
        lines = events_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []  # no event at all: the page says no shutdown was found
    at = outcome.exited_at if outcome.killed_at is None else outcome.killed_at
    if at is not None and outcome.returncode is not None:
        rc = outcome.returncode
        code, why = (128 - rc if rc < 0 else rc), "as spotgrace simulate saw it"
        if outcome.killed_at is not None:
            why = "SIGKILL by spotgrace simulate at the stop timeout"
        exit_event = {"ts": at, "pid": pid, "event": "shutdown.exit"}
        lines.append(json.dumps({**exit_event, "code": code, "why": why}))
    try:
        write_html(lines, html, title="spotgrace simulate: the app's shutdown")
    except OSError as exc:
        note(f"cannot write the picture to {html}: {exc}")
        return
    note(f"wrote the timeline picture to {html}")


def _describe_code(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 70 else text[:67] + "..."


def _report(outcome: Outcome, start: float, stop_timeout: float, out: TextIO) -> int:
    rows = list(outcome.timeline)
    for ev in outcome.events:
        detail = " ".join(f"{k}={_fmt(v)}" for k, v in ev.items() if k not in _HIDDEN)
        rows.append((float(ev["ts"]), "app", f"{ev['event']}  {detail}".rstrip()))
    rows.sort(key=lambda r: r[0])
    out.write("\nTimeline (seconds since start)\n")
    for ts, who, text in rows:
        out.write(f"  {ts - start:8.3f}  {who:<8}  {text}\n")
    ok, verdict = _verdict(outcome, stop_timeout)
    out.write(f"\nVerdict: {'CLEAN' if ok else 'NOT CLEAN'}: {verdict}\n")
    out.flush()
    return 0 if ok else 1


def _shortfall(summary: dict[str, Any]) -> str:
    parts = []
    if summary.get("drained") is False:
        parts.append("in-flight work did not drain in time")
    cancelled = summary.get("cancelled")
    if isinstance(cancelled, int) and cancelled > 0:
        parts.append(f"{cancelled} task{'s' if cancelled > 1 else ''} of work cancelled")
    for key, what in (("timed_out", "timed out"), ("failed", "failed"), ("skipped", "skipped")):
        n = summary.get(key)
        if isinstance(n, int) and n > 0:
            parts.append(f"{n} hook{'s' if n > 1 else ''} {what}")
    return ", ".join(parts) or "see the events above"


def _verdict(o: Outcome, stop_timeout: float) -> tuple[bool, str]:
    names = [e["event"] for e in o.events]
    started = "shutdown.started" in names
    finished = "shutdown.finished" in names
    last = f" (its last event was {names[-1]!r})" if names else ""
    if o.killed_at is not None:
        if not o.events:
            why = (
                "it emitted no spotgrace events at all: it does not run under "
                "spotgrace.graceful(), or SIGTERM never reached it (a shell entrypoint "
                "without exec swallows it), or it ignores SIGTERM"
            )
        elif not started:
            why = "spotgrace never saw the SIGTERM: no shutdown.started event" + last
        else:
            why = "the shutdown started but did not end in time" + last
        return False, f"killed by SIGKILL after the {stop_timeout:g}s stop timeout: {why}"
    if o.sigterm_at is None:
        how = _describe_code(o.returncode if o.returncode is not None else -1)
        if started and finished and o.returncode == 0:
            return True, f"shut down on the metadata notice alone, before any SIGTERM ({how})"
        return False, f"the app exited before the SIGTERM, with {how}" + last
    if o.exited_at is None or o.returncode is None:
        return False, "the app's end was not observed"
    took = o.exited_at - o.sigterm_at
    spare = stop_timeout - took
    code = o.returncode
    if code == 124 or "shutdown.deadline_exceeded" in names:
        return False, f"the watchdog ended it at its deadline (code {code}): something was stuck"
    summary = next((e for e in reversed(o.events) if e["event"] == "shutdown.finished"), None)
    if summary is not None and summary.get("clean") is False:
        return False, (
            f"exited with {_describe_code(code)} {took:.2f}s after SIGTERM, before the "
            f"SIGKILL, but the shutdown was not clean: {_shortfall(summary)}"
        )
    exit_ev = next((e for e in reversed(o.events) if e["event"] == "shutdown.exit"), None)
    if code == EXIT_INCOMPLETE and summary is not None and exit_ev is not None:
        return True, (
            f"exited with code {code} {took:.2f}s after SIGTERM, {spare:.2f}s before the "
            f"SIGKILL: a clean stop, but {exit_ev.get('why', 'the work is not done')}; "
            f"a scheduler that retries on exit code {code} resumes it (docs/batch-jobs.md)"
        )
    if code != 0:
        why = f" ({exit_ev['why']})" if exit_ev is not None and "why" in exit_ev else last
        return False, f"it exited {took:.2f}s after SIGTERM with {_describe_code(code)}" + why
    if not finished:
        return True, (
            f"exited with code 0 {took:.2f}s after SIGTERM ({spare:.2f}s before the SIGKILL), "
            "but without spotgrace's shutdown.finished event: the sequence cannot be confirmed"
        )
    return True, (
        f"exited with code 0 {took:.2f}s after SIGTERM, {spare:.2f}s before the SIGKILL "
        "would have come"
    )
