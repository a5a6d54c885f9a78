"""End to end: real apps in subprocesses, real SIGTERM, exit codes and event timelines."""

from __future__ import annotations

import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from ._proc import kill_quietly, start

pytestmark = pytest.mark.slow


def test_sync_worker_finishes_job_in_flight_runs_hooks_in_order_and_exits_0() -> None:
    proc = start("sync_worker.py")
    try:
        proc.wait_for_line("ready")
        proc.wait_for_line("job-start 2")  # SIGTERM lands mid-job
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert code == 0, proc.output()
    started = [line for line in printed if line.startswith("job-start")]
    done = [line for line in printed if line.startswith("job-done")]
    assert len(started) == len(done), "a job in flight at SIGTERM was abandoned"
    hooks = [line for line in printed if line.startswith("hook:")]
    # order=-10 first; then the two order-0 hooks, last registered first.
    assert hooks == ["hook:deregister", "hook:flush_metrics", "hook:close_db"]
    assert printed.index(done[-1]) < printed.index(hooks[0]), "hooks ran before the drain"
    assert "handlers-restored True" in printed
    finished = proc.event("shutdown.finished")
    assert finished["clean"] is True
    assert finished["finished"] == 3
    assert proc.event("shutdown.started")["signal"] == "SIGTERM"


def test_async_app_drains_all_tasks_then_hooks_and_exits_0() -> None:
    proc = start("async_app.py")
    try:
        proc.wait_for_line("ready")
        time.sleep(0.2)
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert code == 0, proc.output()
    for w in ("w0", "w1", "w2"):
        started = [line for line in printed if line.startswith(f"{w}-start")]
        done = [line for line in printed if line.startswith(f"{w}-done")]
        assert started, proc.output()
        assert len(started) == len(done), proc.output()
    hooks = [line for line in printed if line.startswith("hook:")]
    assert hooks == ["hook:stop_consumer", "hook:close_pool"]
    assert "handlers-restored True" in printed
    names = [e["event"] for e in proc.events()]
    for step in (
        "shutdown.started",
        "readiness.changed",
        "shutdown.stopping",
        "drain.started",
        "drain.finished",
        "cleanup.started",
        "shutdown.finished",
    ):
        assert step in names, f"{step} missing from {names}"
    assert names.index("drain.finished") < names.index("cleanup.started")


def test_sigint_first_is_handled_like_sigterm() -> None:
    proc = start("async_app.py")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGINT)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    assert proc.event("shutdown.started")["signal"] == "SIGINT"
    assert "KeyboardInterrupt" not in proc.output()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SPOTGRACE_EXIT_CODE": "signal"}, -signal.SIGTERM),
        ({"SPOTGRACE_EXIT_CODE": "3"}, 3),
    ],
)
def test_exit_code_policy(env: dict[str, str], expected: int) -> None:
    proc = start("idle.py", env=env)
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert code == expected, proc.output()
    assert "hook:slow_hook" in proc.printed(), "hooks must run before the exit policy"


def test_bad_environment_value_fails_at_start_naming_the_variable() -> None:
    proc = start("idle.py", env={"SPOTGRACE_STOP_TIMEOUT": "abc"})
    try:
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert code != 0
    assert "SPOTGRACE_STOP_TIMEOUT" in proc.output()
    assert "ready" not in proc.printed()


def test_interrupt_ends_blocking_serve_forever_after_request_in_flight() -> None:
    proc = start("blocking_server.py")
    try:
        line = proc.wait_for_line("ready port=")
        port = int(line.split("port=")[1])
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10).read()
            )
            proc.wait_for_line("slow-start")
            proc.signal(signal.SIGTERM)
            body = slow.result(timeout=15)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert body == b"ok\n", "the request in flight at SIGTERM was cut off"
    assert code == 0, proc.output()
    printed = proc.printed()
    assert "served /slow" in printed
    assert "hook:closed" in printed
    assert "after-block" not in printed, "exit policy: SystemExit(0) after a signal"


def test_interrupt_after_request_shutdown_from_the_main_thread_itself() -> None:
    proc = start("blocking_server.py")
    try:
        line = proc.wait_for_line("ready port=")
        port = int(line.split("port=")[1])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/quit", timeout=10).read()
        code = proc.finish(timeout=20)
    finally:
        kill_quietly(proc)
    assert body == b"ok\n", "the request that asked for the shutdown was answered"
    assert code == 0, proc.output()
    printed = proc.printed()
    assert "served /quit" in printed
    assert "hook:closed" in printed
    assert "after-block" in printed  # a manual shutdown returns normally from the block
    assert proc.event("shutdown.started")["source"] == "manual"


def test_run_cancels_main_at_stopping_then_runs_hooks() -> None:
    proc = start("run_main.py")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert code == 0, proc.output()
    assert "main-cancelled" in printed, proc.output()
    assert printed.index("main-cancelled") < printed.index("hook:goodbye")
