"""The exit-code table of docs/semantics.md, row by row: real processes, real signals.

Each row starts ``tests/programs/exits_app.py`` in one mode, sends SIGTERM
(or not), and checks the code a scheduler would see, whether code after the
block ran, and the final ``shutdown.exit`` event.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests._proc import Proc, kill_quietly, start

APP = "exits_app.py"


def _run(mode: str, *args: str, sigterm: bool = True, timeout: float = 30.0) -> tuple[int, Proc]:
    proc = start(APP, mode, *args)
    try:
        if sigterm:
            proc.wait_for_line("ready")
            proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=timeout)
    finally:
        kill_quietly(proc)
    return code, proc


def _exit_event(proc: Proc) -> dict[str, object]:
    return proc.event("shutdown.exit")


def _after_block(proc: Proc) -> bool:
    return any(line.startswith("after-block") for line in proc.printed())


@pytest.mark.parametrize(
    ("mode", "code", "why"),
    [
        ("clean", 0, "clean and finished"),
        ("hook-fails", 70, "1 hook failed"),
        ("hook-timeout", 70, "1 hook timed out"),
        ("drain-cancel", 70, "work still in flight"),
        ("run-cancel", 70, "3 tasks of work cancelled"),
        ("mark-incomplete", 75, "report half written"),
        ("sys-exit", 42, "SystemExit(42)"),
        ("always-zero", 0, "exit_code=0 (not clean: 1 hook failed)"),
    ],
)
def test_after_sigterm_the_process_exits_with_the_verdicts_code(
    mode: str, code: int, why: str
) -> None:
    got, proc = _run(mode)
    assert got == code, proc.output()
    event = _exit_event(proc)
    assert event["code"] == code
    assert why in str(event["why"]), event
    # After a signal, the block does not return: code after it never runs.
    assert not _after_block(proc), proc.output()


def test_checkpointed_job_stopped_midway_exits_75_and_a_rerun_finishes_with_0(
    tmp_path: Path,
) -> None:
    ck = str(tmp_path / "ck.json")
    got, proc = _run("checkpoint", ck)
    assert got == 75, proc.output()  # AWS Batch evaluateOnExit onExitCode "75" -> RETRY
    assert "checkpoint 'job' stopped at position" in str(_exit_event(proc)["why"])
    # The rerun (the scheduler's retry) resumes and finishes: 0, no signal needed.
    got, proc = _run("checkpoint", ck, sigterm=False, timeout=60)
    assert got == 0, proc.output()
    assert proc.printed()[-1] == "after-block exit_code=0"


def test_run_counts_logs_and_reports_progress_on_the_work_it_cancelled() -> None:
    # Three TaskGroup consumers, each 30 s into an item, a 2.5 s drain bound.
    got, proc = _run("run-cancel")
    assert got == 70
    progress = [e for e in proc.events() if e.get("event") == "drain.progress"]
    assert progress, proc.output()  # never silent
    assert progress[0]["inflight"] == 3
    timeout = proc.event("drain.timeout")
    assert (timeout["cancelled"], timeout["inflight"]) == (3, 3), timeout
    finished = proc.event("shutdown.finished")
    assert (finished["clean"], finished["cancelled"]) == (False, 3), finished


def test_signal_policy_dies_of_the_signal() -> None:
    got, proc = _run("signal-policy")
    assert got == -signal.SIGTERM, proc.output()  # Popen reports a death by signal N as -N
    assert _exit_event(proc)["code"] == 128 + signal.SIGTERM


def test_return_policy_runs_code_after_the_block_and_keeps_the_verdict() -> None:
    got, proc = _run("return-policy")
    assert got == 0, proc.output()
    assert proc.printed()[-1] == "after-block exit_code=70", proc.output()


@pytest.mark.parametrize(("mode", "line"), [("request", "after-block exit_code=0"),
                                            ("run-return", "after-block main returned")])  # fmt: skip
def test_request_shutdown_returns_normally_and_code_after_the_block_runs(
    mode: str, line: str
) -> None:
    got, proc = _run(mode, sigterm=False)
    assert got == 0, proc.output()
    assert proc.printed()[-1] == line, proc.output()


def test_hook_registered_during_the_cleanup_runs_and_the_exit_is_clean() -> None:
    got, proc = _run("late-hook")
    assert got == 0, proc.output()
    assert "hook:late-ran" in proc.printed()
    assert proc.event("shutdown.finished")["finished"] == 2


def test_watchdog_row_exits_124() -> None:
    got, proc = _run("watchdog")
    assert got == 124, proc.output()
    assert proc.event("shutdown.deadline_exceeded")["exit_code"] == 124


def test_second_signal_row_exits_128_plus_n() -> None:
    proc = start(APP, "slow-hook")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        proc.wait_for_line("hook:slow-started")
        proc.signal(signal.SIGTERM)
        got = proc.finish()
    finally:
        kill_quietly(proc)
    assert got == 128 + signal.SIGTERM, proc.output()


def test_bad_configuration_row_exits_1_naming_the_option() -> None:
    got, proc = _run("bad-config", sigterm=False)
    assert got == 1
    assert "margin (10 s, from the keyword margin=) must be less than stop_timeout" in proc.output()
