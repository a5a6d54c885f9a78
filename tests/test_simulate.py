"""``spotgrace simulate`` end to end: real processes, real signals, fake endpoints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "examples" / "worker_app.py"

pytestmark = pytest.mark.slow

IGNORES_SIGTERM = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("pid", os.getpid(), flush=True)
while True:
    time.sleep(0.2)
"""

STUCK_HOOK = """
import time, spotgrace

@spotgrace.on_shutdown(timeout=60)
def stuck() -> None:
    time.sleep(60)  # a sync hook: timed out and left behind

with spotgrace.graceful() as grace:
    grace.wait()
"""

LOOP_BLOCKING_HOOK = """
import time, spotgrace

@spotgrace.on_shutdown(timeout=60)
async def blocks_the_loop() -> None:
    time.sleep(60)  # blocks the sequence's event loop: only the watchdog can end it

with spotgrace.graceful() as grace:
    grace.wait()
"""

QUICK_EXIT = "print('done already')"


def simulate(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "spotgrace", "simulate", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def timeline(out: str) -> str:
    return out.split("Timeline (seconds since start)", 1)[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_example_worker_exits_cleanly_before_the_kill() -> None:
    proc = simulate(
        "--interrupt-after", "2", "--stop-timeout", "10", "--", sys.executable, str(WORKER)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = timeline(proc.stdout)
    order = [
        "SIGTERM sent",
        "shutdown.started",
        "shutdown.stopping",
        "drain.finished",
        "hook.finished",
        "shutdown.finished",
        "the app exited with code 0",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions), text
    assert "Verdict: CLEAN: exited with code 0" in proc.stdout
    assert "worker: acknowledged" in proc.stdout  # the app's own output is shown


def test_app_that_ignores_sigterm_is_killed_and_the_verdict_says_so() -> None:
    started = time.monotonic()
    proc = simulate(
        "--interrupt-after", "1", "--stop-timeout", "2", "--", sys.executable, "-c", IGNORES_SIGTERM
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert "Verdict: NOT CLEAN: killed by SIGKILL after the 2s stop timeout" in proc.stdout
    assert "emitted no spotgrace events" in proc.stdout
    assert 2.5 < elapsed < 60
    match = re.search(r"app \| pid (\d+)", proc.stdout)
    assert match is not None
    assert not pid_alive(int(match.group(1)))


def test_hook_timeout_exits_in_time_but_is_not_clean() -> None:
    proc = simulate(
        "--interrupt-after", "1", "--stop-timeout", "4", "--", sys.executable, "-c", STUCK_HOOK
    )
    assert proc.returncode == 1
    assert "Verdict: NOT CLEAN: exited with code 70" in proc.stdout
    assert "1 hook timed out" in proc.stdout
    assert "hook.timeout" in timeline(proc.stdout)


def test_loop_blocking_hook_ends_with_the_watchdog_and_is_not_clean() -> None:
    proc = simulate(
        "--interrupt-after",
        "1",
        "--stop-timeout",
        "4",
        "--",
        sys.executable,
        "-c",
        LOOP_BLOCKING_HOOK,
    )
    assert proc.returncode == 1
    assert "Verdict: NOT CLEAN: the watchdog ended it" in proc.stdout
    assert "shutdown.deadline_exceeded" in timeline(proc.stdout)


def test_app_exiting_before_the_interruption_is_not_clean() -> None:
    proc = simulate("--interrupt-after", "5", "--", sys.executable, "-c", QUICK_EXIT)
    assert proc.returncode == 1
    assert "Verdict: NOT CLEAN: the app exited before the SIGTERM, with code 0" in proc.stdout
    assert "SIGTERM sent" not in proc.stdout


def test_early_warning_shuts_down_before_the_sigterm() -> None:
    proc = simulate(
        "--interrupt-after",
        "2",
        "--warning",
        "8",
        "--stop-timeout",
        "10",
        "--watch",
        "--",
        sys.executable,
        str(WORKER),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = timeline(proc.stdout)
    assert "watch.notice" in text
    assert "SIGTERM sent" not in text
    assert "Verdict: CLEAN: shut down on the metadata notice alone" in proc.stdout


def test_missing_command_is_a_usage_error() -> None:
    proc = simulate("--interrupt-after", "1")
    assert proc.returncode == 2
    assert "give the command" in proc.stderr


def test_demo_script_runs_the_rehearsal() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict: CLEAN" in proc.stdout


def test_in_process_simulate_of_an_app_that_ignores_sigterm() -> None:
    import io

    from spotgrace._cli._simulate import simulate as run_simulation

    out = io.StringIO()
    code = run_simulation(
        [sys.executable, "-c", IGNORES_SIGTERM], interrupt_after=0.5, stop_timeout=1.0, out=out
    )
    assert code == 1
    text = out.getvalue()
    assert "stop timeout reached: SIGKILL sent" in text
    assert "Verdict: NOT CLEAN: killed by SIGKILL" in text


def test_events_file_gets_one_json_line_per_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from spotgrace._core._eventlog import EVENTS_FILE_ENV, emit

    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_FILE_ENV, str(path))
    emit("info", "watch.started", sources=["ecs"], interval=5.0)
    emit("warning", "watch.notice", reason="x" * 10, within=None, odd=object())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["level"]) for e in lines] == [
        ("watch.started", "info"),
        ("watch.notice", "warning"),
    ]
    assert lines[0]["sources"] == ["ecs"]
    assert lines[0]["pid"] == os.getpid()
    assert lines[1]["odd"].startswith("<object")  # not JSON: written as its repr
    assert abs(lines[0]["ts"] - time.time()) < 60


def test_events_file_that_cannot_be_written_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spotgrace._core._eventlog import EVENTS_FILE_ENV, emit

    monkeypatch.setenv(EVENTS_FILE_ENV, str(tmp_path / "missing-dir" / "events.jsonl"))
    emit("info", "watch.started", sources=[])  # must not raise
    assert not (tmp_path / "missing-dir").exists()
