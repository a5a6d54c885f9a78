"""Review of the exit-code policy (issue 11): rows that broke, with real processes and signals."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
import structlog.testing

from spotgrace import ConfigError
from spotgrace._cli._doctor import run_checks
from spotgrace._core import _envcheck
from spotgrace._core._config import MIN_BUDGET, MIN_MARGIN, child_budget, resolve_options
from spotgrace.checkpoint import CheckpointPathError, FileCheckpoint
from tests._proc import Proc, kill_quietly, start

APP = "exits_review_app.py"
SOURCE = Path(__file__).parent.parent / "spotgrace"


def _run(mode: str, *args: str, sigterm: bool = True) -> tuple[int, Proc]:
    proc = start(APP, mode, *args)
    try:
        if sigterm:
            proc.wait_for_line("ready")
            proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=30)
    finally:
        kill_quietly(proc)
    return code, proc


def test_run_honours_mains_own_sys_exit_after_a_signal() -> None:
    # Before: the SystemExit escaped main's task, the loop cancelled the block,
    # and the process exited 70 ("the block raised CancelledError()").
    code, proc = _run("run-sys-exit")
    assert code == 75, proc.output()
    event = proc.event("shutdown.exit")
    assert (event["code"], event["why"]) == (75, "the app raised SystemExit(75)")
    assert not [e for e in proc.events() if e["event"] == "shutdown.body_failed"]


def test_async_block_honours_a_tasks_own_sys_exit_after_a_signal() -> None:
    # Plain asyncio.run() exits 75 here. Before: the block, cancelled by
    # asyncio.run()'s teardown, raised SystemExit(70) over the app's own 75.
    code, proc = _run("task-sys-exit")
    assert code == 75, proc.output()
    event = proc.event("shutdown.exit")
    assert (event["code"], event["why"]) == (75, "the app raised SystemExit(75)")


def test_sys_exit_out_of_range_states_the_code_the_os_reports() -> None:
    # Before: shutdown.exit said code=300 while the parent saw 44.
    code, proc = _run("sys-exit-300")
    assert code == 300 & 0xFF == 44, proc.output()
    event = proc.event("shutdown.exit")
    assert event["code"] == 44
    assert "SystemExit(300)" in str(event["why"])


def test_signal_policy_after_a_notice_without_a_signal_keeps_the_verdict() -> None:
    # Before: exit_code="signal" with no signal to die of exited 0 after a failed hook.
    code, proc = _run("signal-policy-notice", sigterm=False)
    assert code == 70, proc.output()
    assert proc.event("shutdown.exit")["code"] == 70


def test_checkpointed_loop_that_finished_at_the_signal_is_done_not_retry(tmp_path: Path) -> None:
    # Before: the loop saw `stopping` before learning the source was exhausted,
    # marked the job incomplete and exited 75, so a finished job was retried.
    path = str(tmp_path / "ck.json")
    code, proc = _run("checkpoint-last", path, sigterm=False)
    assert code == 0, proc.output()
    assert proc.event("shutdown.exit")["why"] == "clean and finished"
    assert FileCheckpoint(path).load("job") == {"position": 5, "complete": True}


def test_a_checkpoint_stopped_then_finished_in_the_same_process_is_not_retried(
    tmp_path: Path,
) -> None:
    # Before: the first iteration's "incomplete" mark stuck to the grace, and a
    # later SIGTERM exited 75 "stopped at position 3" for a job that was complete.
    code, proc = _run("resumed-in-process", str(tmp_path / "ck.json"))
    assert "ready {'complete': True, 'position': 10}" in proc.printed(), proc.output()
    assert code == 0, proc.output()
    assert proc.event("shutdown.exit")["why"] == "clean and finished"


@pytest.mark.parametrize(
    ("stop_timeout", "margin"),
    [(0.6, 0.5), (1, 0.5), (1.2, 0.5), (10, 9.5), (0.502, 0.5), (30, 3), (120, 5), (3600, 0.2)],
)
def test_child_budget_is_always_a_valid_configuration_inside_the_supervisors(
    stop_timeout: float, margin: float
) -> None:
    # Before: a child budget of 0.5 s or less came with the default margin of
    # 0.5 s, and the child failed at start with a ConfigError.
    handed = child_budget(stop_timeout, margin)
    if stop_timeout - margin < MIN_MARGIN + MIN_BUDGET:
        assert handed == {}  # no valid child budget exists: none is handed down
        return
    child = resolve_options(environ=handed, warn=False)
    assert child.stop_timeout <= stop_timeout - margin + 1e-9  # float noise, not time
    assert MIN_MARGIN <= child.margin < child.stop_timeout


def test_spotgrace_run_with_a_short_stop_timeout_starts_a_spotgrace_child() -> None:
    # 1.2 s - a 0.5 s margin: a 0.7 s child budget, the shortest kind that still
    # fits the floors (margin >= 0.2 s, budget >= 0.25 s) with room to spare.
    supervisor = [sys.executable, "-m", "spotgrace", "run", "--stop-timeout", "1.2", "--"]
    proc = start(APP, "plain", prefix=supervisor)
    try:
        line = proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=30)
    finally:
        kill_quietly(proc)
    assert line == "ready stop_timeout=0.7 margin=0.45", proc.output()
    assert code == 0, proc.output()


def test_spotgrace_run_child_starts_with_a_drain_delay_the_supervisor_accepted() -> None:
    # SPOTGRACE_DRAIN_DELAY=2.4 fits the supervisor's 3 - 0.5 = 2.5 s, not the
    # child's 2.5 - 0.5 = 2 s. Before: the child failed at start (exit 1).
    supervisor = [sys.executable, "-m", "spotgrace", "run", "--stop-timeout", "3", "--"]
    proc = start(APP, "plain", prefix=supervisor, env={"SPOTGRACE_DRAIN_DELAY": "2.4"})
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=30)
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    started = [e for e in proc.events() if e["event"] == "shutdown.started" and "drain_delay" in e]
    # Half the child's budget: what the lame duck is capped at on a plain SIGTERM anyway.
    assert started[0]["drain_delay"] == 1.0, proc.output()


def test_child_budget_lowers_only_a_drain_delay_the_child_cannot_hold() -> None:
    assert "SPOTGRACE_DRAIN_DELAY" not in child_budget(30, 3, {"SPOTGRACE_DRAIN_DELAY": "12"})
    env = {"SPOTGRACE_DRAIN_DELAY": "25"}
    child = resolve_options(environ={**env, **child_budget(30, 3, env)}, warn=False)
    assert (child.stop_timeout, child.margin, child.drain_delay) == (27, 2.7, 12.15)


def _variables_spotgrace_reads() -> set[str]:
    names: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        if path.name == "_envcheck.py":  # its docstring shows a typo on purpose
            continue
        names.update(re.findall(r"SPOTGRACE_[A-Z0-9_]+", path.read_text()))
    return names


def test_no_variable_spotgrace_reads_anywhere_is_called_unknown() -> None:
    names = _variables_spotgrace_reads()
    assert "SPOTGRACE_FLEET_SERVICES" in names  # the scan sees the subsystems
    environ = {n + ("X" if n.endswith("_") else ""): "1" for n in names}
    # Before: every SPOTGRACE_FLEET_* variable was "not a spotgrace variable".
    assert [n for n in environ if not _envcheck.is_known(n)] == []
    _envcheck._warned.clear()
    with structlog.testing.capture_logs() as logs:
        _envcheck.check_unknown(environ)
    assert [e for e in logs if e["event"] == "config.unknown_variable"] == []
    checks = {c.name: c for c in run_checks(environ={"SPOTGRACE_FLEET_SERVICES": "c/s"})}
    assert checks["variables"].status == "ok", checks["variables"]


def test_a_typo_is_still_called_unknown() -> None:
    assert not _envcheck.is_known("SPOTGRACE_STOPTIMEOUT")
    assert not _envcheck.is_known("SPOTGRACE_FLEET")


def test_a_lock_file_that_is_not_a_regular_file_is_refused_at_start(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".ck.json.lock", 0o600)
    with pytest.raises(CheckpointPathError, match=r"lock file \.ck\.json\.lock is not a regular"):
        FileCheckpoint(tmp_path / "ck.json")


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="chown needs root")
def test_a_lock_file_owned_by_another_user_is_refused_at_once(tmp_path: Path) -> None:
    # Before: root opened it and waited 10 s behind the other user's lock at every save.
    store = FileCheckpoint(tmp_path / "ck.json")
    lock = tmp_path / ".ck.json.lock"
    lock.touch(mode=0o644)
    os.chown(lock, 65534, 65534)
    with pytest.raises(CheckpointPathError, match="owned by uid 65534"):
        store.save("job", {"position": 1, "complete": False})
    with pytest.raises(CheckpointPathError, match="owned by uid 65534"):
        FileCheckpoint(tmp_path / "ck.json")


@pytest.mark.parametrize("keyword", ["exit_code", "watchdog_exit_code"])
@pytest.mark.parametrize("value", [1.5, 124.9, 75.0])
def test_an_exit_code_that_is_not_a_whole_number_is_refused(keyword: str, value: float) -> None:
    # Before: int() truncated it: exit_code=1.5 exited 1, watchdog_exit_code=124.9 exited 124.
    with pytest.raises(ConfigError, match=f"{keyword} .* must be an exit code 0-255"):
        resolve_options(environ={}, **{keyword: value})
