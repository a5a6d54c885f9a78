"""Real shutdowns for the timeline tests: real programs, real signals, their real event logs.

Each scenario starts test programs as subprocesses with ``SPOTGRACE_EVENTS_FILE``
set, delivers the signals and returns everything they wrote: the events file
(``ts`` and ``pid`` on each line) and the merged stdout/stderr, which holds
the same events as structlog JSON lines without a pid, mixed with the
programs' other output, as ``docker logs`` would show it.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests._proc import PROGRAMS, Proc, kill_quietly, start


@dataclass
class Capture:
    """What one real shutdown left behind."""

    name: str
    events_file: str  # SPOTGRACE_EVENTS_FILE content
    output: str  # merged stdout + stderr
    returncodes: list[int]


def _env(path: Path, **extra: str) -> dict[str, str]:
    return {"SPOTGRACE_EVENTS_FILE": str(path), **extra}


def _finish(name: str, path: Path, procs: list[Proc], timeout: float = 30) -> Capture:
    try:
        codes = [p.finish(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            kill_quietly(p)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return Capture(name, text, "\n".join(p.output() for p in procs), codes)


def clean(tmp: Path) -> Capture:
    """A sync worker with a job in flight and three hooks; one SIGTERM."""
    path = tmp / "clean.jsonl"
    p = start("sync_worker.py", env=_env(path))
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    return _finish("clean", path, [p])


def hook_timeout(tmp: Path) -> Capture:
    """A hook that hangs is timed out after SPOTGRACE_HOOK_TIMEOUT; the next hook runs."""
    path = tmp / "hook_timeout.jsonl"
    env = _env(path, SPOTGRACE_STOP_TIMEOUT="6", SPOTGRACE_HOOK_TIMEOUT="0.5")
    p = start("stuck_hook.py", "sync-hang", env=env)
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    return _finish("hook_timeout", path, [p])


def watchdog(tmp: Path) -> Capture:
    """A hook blocks the event loop: only the watchdog can end the process (code 124)."""
    path = tmp / "watchdog.jsonl"
    env = _env(path, SPOTGRACE_STOP_TIMEOUT="2.5", SPOTGRACE_MARGIN="0.5")
    p = start("stuck_hook.py", "block-loop", env=env)
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    return _finish("watchdog", path, [p])


def second_signal(tmp: Path) -> Capture:
    """A second SIGTERM while a hook hangs: the process exits at once with 128+15."""
    path = tmp / "second_signal.jsonl"
    p = start("stuck_hook.py", "sync-hang", env=_env(path, SPOTGRACE_STOP_TIMEOUT="20"))
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    p.wait_for_line('"hook.started"', timeout=10)
    p.wait_for_line("hang_forever", timeout=10)
    time.sleep(0.3)
    p.signal(signal.SIGTERM)
    return _finish("second_signal", path, [p])


def supervised(tmp: Path) -> Capture:
    """``spotgrace run -- python sync_worker.py``: SIGTERM to the supervisor, forwarded."""
    path = tmp / "supervised.jsonl"
    run = [sys.executable, "-m", "spotgrace", "run", "--stop-timeout", "8", "--"]
    p = start(PROGRAMS / "sync_worker.py", env=_env(path), prefix=run)
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    return _finish("supervised", path, [p])


def supervisor_kill(tmp: Path) -> Capture:
    """``spotgrace run --stop-timeout 2`` over an app whose hook blocks its loop and which
    overrides the budget the supervisor hands it (``env SPOTGRACE_STOP_TIMEOUT=30``):
    the supervisor SIGKILLs the group at its deadline."""
    path = tmp / "supervisor_kill.jsonl"
    run = [sys.executable, "-m", "spotgrace", "run", "--stop-timeout", "2", "--"]
    run += ["env", "SPOTGRACE_STOP_TIMEOUT=30", "SPOTGRACE_MARGIN=3"]
    env = _env(path)
    p = start(PROGRAMS / "stuck_hook.py", "block-loop", env=env, prefix=run)
    p.wait_for_line("ready")
    p.signal(signal.SIGTERM)
    return _finish("supervisor_kill", path, [p])


def rolling(tmp: Path) -> Capture:
    """Two workers writing one events file, stopped one after the other."""
    path = tmp / "rolling.jsonl"
    first = start("sync_worker.py", env=_env(path))
    second = start("sync_worker.py", env=_env(path))
    first.wait_for_line("ready")
    second.wait_for_line("ready")
    first.signal(signal.SIGTERM)
    first.finish(timeout=30)
    second.signal(signal.SIGTERM)
    return _finish("rolling", path, [first, second])


SCENARIOS: dict[str, Callable[[Path], Capture]] = {
    f.__name__: f
    for f in (clean, hook_timeout, watchdog, second_signal, supervised, supervisor_kill, rolling)
}


def run_all(tmp: Path) -> dict[str, Capture]:
    """Every scenario, concurrently (each is mostly waiting)."""
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {name: pool.submit(f, tmp) for name, f in SCENARIOS.items()}
        return {name: fut.result() for name, fut in futures.items()}
