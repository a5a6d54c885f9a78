"""Review of issue 10's deadline work: hostile cases found after it landed.

Real processes, real signals (``tests/programs/deadline_review.py``); generous bounds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ._proc import PROGRAMS, ROOT, kill_quietly, start

pytestmark = pytest.mark.slow


def test_children_forked_after_the_notice_are_not_hung_by_the_backstop() -> None:
    # faulthandler's timer armed in the parent at fork time left the child with
    # faulthandler's locks held by a thread it does not have: its own graceful()
    # hung at the notice, and a normal interpreter exit hung for ever.
    proc = start("deadline_review.py", "fork-armed")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        proc.wait_for_line("child-plain-exit:", timeout=20)
        code = proc.finish(timeout=20)
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert "child-own-graceful:0" in printed, proc.output()
    assert "child-plain-exit:0" in printed, proc.output()
    assert code == 0, proc.output()


@pytest.mark.parametrize(("policy", "expected"), [("auto", 0), ("signal", -signal.SIGTERM)])
def test_a_stdlib_handler_stuck_on_a_full_pipe_does_not_cost_the_verdict(
    policy: str, expected: int
) -> None:
    # The event writer stuck in a logging.StreamHandler holds its lock: the exit's
    # logging.shutdown (auto) or flush_logs (signal) waited for it until the
    # watchdog's 124 at the deadline.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    env["SPOTGRACE_EXIT_CODE"] = policy
    popen = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "deadline_review.py"), "stdlib-full-pipe"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        assert popen.stderr is not None
        assert popen.stderr.readline() == b"ready\n"
        sent = time.monotonic()
        popen.send_signal(signal.SIGTERM)
        code = popen.wait(timeout=20)
        took = time.monotonic() - sent
        err = popen.stderr.read()
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
        for pipe in (popen.stdout, popen.stderr):
            if pipe is not None:
                pipe.close()
    assert b"hook-ran" in err
    assert code == expected, err
    assert took < 3.0, f"gone {took:.2f}s after SIGTERM (stop_timeout 3)"


def test_a_signal_while_the_block_is_entered_is_not_lost() -> None:
    # Its handler ran before the wake-up channel existed: the signal was queued
    # with nothing to wake the notice thread, which then slept on the empty pipe.
    proc = start("deadline_review.py", "enter-race")
    try:
        line = proc.wait_for_line("stopping-seen:", timeout=20)
        code = proc.finish(timeout=20)
    finally:
        kill_quietly(proc)
    assert line.startswith("stopping-seen:True"), proc.output()
    assert code == 0, proc.output()


def test_ctrl_c_escalates_after_kicks_the_main_thread_held_back() -> None:
    # Kicks sent while the main thread blocked SIGINT merged into one pending
    # signal, but each was counted: the count then swallowed the real SIGINT.
    proc = start("deadline_review.py", "kick-masked")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        proc.wait_for_line("hook", timeout=20)
        sent = proc.signal(signal.SIGINT)
        code = proc.finish(timeout=20)
        took = time.monotonic() - sent
    finally:
        kill_quietly(proc)
    assert code == 128 + signal.SIGINT, proc.output()
    assert took < 2.0, f"Ctrl-C took {took:.2f}s to end the process"
