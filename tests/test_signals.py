"""Signal handling: install/restore, escalation on a second signal, PID 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import spotgrace

from ._proc import alive, kill_quietly, start
from .helpers.supervised import pid_namespace_problem

# ------------------------------------------------------------------ in-process


def test_handlers_installed_on_enter_and_restored_on_exit() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, mine)
    with spotgrace.graceful(exit_code="return") as grace:
        assert signal.getsignal(signal.SIGTERM) != mine
        assert grace.state is spotgrace.State.RUNNING
    assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handlers_restored_when_the_body_raises() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ZeroDivisionError), spotgrace.graceful(exit_code="return"):
        1 / 0  # noqa: B018
    assert signal.getsignal(signal.SIGTERM) is before


def test_raise_signal_starts_the_shutdown_in_process() -> None:
    with spotgrace.graceful(exit_code="return") as grace:
        signal.raise_signal(signal.SIGTERM)
        assert not grace.ready  # red in the handler itself, before the notice thread runs
        assert grace.wait(timeout=10)
        assert grace.notice is not None
        assert grace.notice.signal is signal.SIGTERM
        assert not grace.ready
    assert grace.state is spotgrace.State.DONE


def test_installing_outside_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with spotgrace.graceful():
                pass
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], spotgrace.SignalInstallError)
    assert "main thread" in str(errors[0])


def test_no_signals_option_works_outside_the_main_thread() -> None:
    done: list[spotgrace.State] = []

    def target() -> None:
        with spotgrace.graceful(signals=()) as grace:
            grace.request_shutdown("test")
        done.append(grace.state)

    t = threading.Thread(target=target)
    t.start()
    t.join(timeout=20)
    assert done == [spotgrace.State.DONE]


def test_two_active_blocks_are_refused_and_the_first_keeps_its_handlers() -> None:
    with spotgrace.graceful(exit_code="return"):
        installed = signal.getsignal(signal.SIGTERM)
        with pytest.raises(spotgrace.StateError, match="already active"), spotgrace.graceful():
            pass
        assert signal.getsignal(signal.SIGTERM) is installed


def test_a_graceful_object_is_entered_once() -> None:
    g = spotgrace.graceful(exit_code="return", signals=())
    with g:
        pass
    with pytest.raises(spotgrace.StateError, match="only once"), g:
        pass


# ------------------------------------------------------------------ subprocesses


@pytest.mark.slow
def test_second_sigint_during_shutdown_exits_promptly() -> None:
    proc = start("idle.py", "60", env={"SPOTGRACE_STOP_TIMEOUT": "120"})
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGINT)
        proc.wait_for_line("hook:slow_hook")  # the shutdown is under way, stuck in a hook
        sent = proc.signal(signal.SIGINT)
        code = proc.finish(timeout=10)
        took = time.monotonic() - sent
    finally:
        kill_quietly(proc)
    assert code == 128 + signal.SIGINT, proc.output()
    assert took < 2.0, f"second Ctrl-C took {took:.2f}s"
    assert proc.event("signal.escalated")["signal"] == "SIGINT"


@pytest.mark.slow
def test_second_signal_can_be_ignored() -> None:
    # The hook sleeps 3 s: the second SIGTERM must land while the handlers are
    # still ours (after the block they are restored, and SIGTERM kills).
    proc = start(
        "idle.py",
        "3",
        env={"SPOTGRACE_SECOND_SIGNAL": "ignore", "SPOTGRACE_STOP_TIMEOUT": "20"},
    )
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        proc.wait_for_line("hook:slow_hook")
        proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=15)
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    assert proc.event("signal.ignored")["signal"] == "SIGTERM"
    assert proc.event("shutdown.finished")["clean"] is True


@pytest.mark.slow
def test_platform_exit_freezes_the_heap_for_a_quick_interpreter_exit() -> None:
    code = (
        "import gc, signal, sys, spotgrace\n"
        "try:\n"
        "    with spotgrace.graceful() as g:\n"
        "        signal.raise_signal(signal.SIGTERM)\n"
        "        g.wait(10)\n"
        "except SystemExit as exc:\n"
        # One write: print()'s pieces could interleave with the event writer's lines.
        "    sys.stdout.write(f'frozen {gc.get_freeze_count() > 0} code {exc.code}\\n')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert "frozen True code 0" in out.stdout, out.stdout + out.stderr


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_pid_1_in_a_fresh_pid_namespace_handles_sigterm() -> None:
    reason = pid_namespace_problem()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PID 1 test: {reason}")
        pytest.skip(reason)
    proc = start("idle.py", prefix=["unshare", "--pid", "--fork", "--mount-proc"])
    try:
        proc.wait_for_line("ready")
        (pid1,) = _children(proc.pid)  # the python process: PID 1 inside the namespace
        status = Path(f"/proc/{pid1}/status").read_text()
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1", nspid
        os.kill(pid1, signal.SIGTERM)  # from the parent namespace, as the runtime does
        code = proc.finish(timeout=20)
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    assert "hook:slow_hook" in proc.printed()
    assert proc.event("shutdown.finished")["clean"] is True
    assert not alive(pid1)
