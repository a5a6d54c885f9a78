"""Misbehaving hooks: the process is gone inside stop_timeout, every time, and the culprit named."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from ._proc import PROGRAMS, Proc, alive, kill_quietly, start

pytestmark = pytest.mark.slow

STOP_TIMEOUT = 3.0


def _run(mode: str) -> tuple[int, float, Proc]:
    proc = start("stuck_hook.py", mode, env={"SPOTGRACE_STOP_TIMEOUT": str(STOP_TIMEOUT)})
    try:
        proc.wait_for_line("ready")
        sent = proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=STOP_TIMEOUT + 10)
        took = time.monotonic() - sent
    finally:
        kill_quietly(proc)
    assert not alive(proc.pid)
    return code, took, proc


def test_hook_that_raises_is_logged_with_traceback_and_the_rest_run() -> None:
    code, _took, proc = _run("raise")
    assert code == 70  # not clean: a hook failed
    failed = proc.event("hook.failed")
    assert failed["hook"] == "broken_hook"
    assert "database already gone" in str(failed.get("exception"))
    assert proc.printed()[-2:] == ["hook:first_good", "hook:last_good"]


@pytest.mark.parametrize("mode", ["sync-hang", "async-hang"])
def test_hanging_hook_is_cut_off_and_the_rest_still_run(mode: str) -> None:
    code, took, proc = _run(mode)
    assert took < STOP_TIMEOUT, f"took {took:.2f}s, past stop_timeout"
    assert code == 70, proc.output()  # not clean: a hook timed out
    timed_out = proc.event("hook.timeout")
    assert timed_out["hook"].startswith(("hang_forever", "refuses_to_die"))
    # last_good declared timeout=1, so that second was kept for it.
    assert proc.printed()[-2:] == ["hook:first_good", "hook:last_good"]


def test_async_hook_that_swallows_cancellation_is_ended_by_the_watchdog_after_the_rest() -> None:
    # Every hook gets its turn, but the task that refuses to be cancelled keeps
    # asyncio.run() from returning: the watchdog ends the process, inside the budget.
    code, took, proc = _run("ignore-cancel")
    assert took < STOP_TIMEOUT, f"took {took:.2f}s, past stop_timeout"
    assert code == 124, proc.output()
    assert proc.event("hook.timeout")["hook"] == "refuses_to_die"
    assert "hook:last_good" in proc.printed()
    assert proc.event("shutdown.deadline_exceeded")["state"] == "done"


def test_hook_blocking_the_event_loop_is_ended_by_the_watchdog() -> None:
    code, took, proc = _run("block-loop")
    assert took < STOP_TIMEOUT, f"took {took:.2f}s, past stop_timeout"
    assert code == 124, proc.output()
    exceeded = proc.event("shutdown.deadline_exceeded")
    assert exceeded["stuck_hooks"] == ["block_the_loop"]
    stacks = " ".join(line for stack in exceeded["threads"].values() for line in stack)
    assert "time.sleep(3600)" in stacks, "the stuck thread's stack should show where it is"


def test_hanging_hook_never_overruns_in_repeated_runs() -> None:
    # The issue asks for "every time": five runs here, twenty in bench/deadline.py.
    for _ in range(5):
        _code, took, _proc = _run("sync-hang")
        assert took < STOP_TIMEOUT


def test_watchdog_exits_even_when_logging_is_stuck_on_a_stalled_pipe() -> None:
    # stdout is a pipe nobody reads: the hook and then the watchdog's own report
    # block on it. The exit must not wait for the report.
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "stalled_stdout.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == b"ready\n"
        started = time.monotonic()
        code = proc.wait(timeout=STOP_TIMEOUT + 10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    # Events are queued, not written by the sequence: the hook times out and the
    # block ends (0), or the watchdog ends it (124); either way on time.
    assert code in (0, 124)
    assert took < STOP_TIMEOUT + 1.0, f"took {took:.2f}s"
