"""Regression tests for bugs a review found in the core, each reproduced before the fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import structlog

import spotgrace

from ._proc import kill_quietly, start


def quiet(**kwargs: Any) -> spotgrace.Graceful:
    kwargs.setdefault("signals", ())
    kwargs.setdefault("exit_code", "return")
    return spotgrace.graceful(**kwargs)


def test_processes_started_by_hooks_do_not_inherit_blocked_stop_signals() -> None:
    masks: list[str] = []
    probe = (
        "import signal; print(sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
    )

    def start_child() -> None:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        masks.append(out.stdout.strip())

    async def start_child_async() -> None:
        start_child()

    with quiet() as grace:
        grace.on_shutdown(start_child)
        grace.on_shutdown(start_child_async)
    assert len(masks) == 2
    for mask in masks:
        assert "SIGTERM" not in mask, mask


def test_hooks_returning_awaitables_and_async_callables_are_awaited() -> None:
    ran: list[str] = []

    async def close_pool() -> None:
        ran.append("lambda")

    class Closer:
        async def __call__(self) -> None:
            ran.append("callable")

    with quiet() as grace:
        grace.on_shutdown(lambda: close_pool(), name="lambda")
        grace.on_shutdown(Closer(), name="callable")
    assert sorted(ran) == ["callable", "lambda"]


def test_async_hook_raising_system_exit_does_not_stop_the_others() -> None:
    ran: list[str] = []
    with structlog.testing.capture_logs() as logs, quiet() as grace:

        @grace.on_shutdown(order=2)
        def after() -> None:
            ran.append("after")

        @grace.on_shutdown(order=1)
        async def exits() -> None:
            raise SystemExit(3)

    assert ran == ["after"]
    assert grace.state is spotgrace.State.DONE
    assert [e["hook"].split(".")[-1] for e in logs if e["event"] == "hook.failed"] == ["exits"]


def test_an_error_in_the_body_during_a_shutdown_is_logged() -> None:
    g = quiet()

    def app() -> None:
        with g as grace:
            grace.request_shutdown("deploy")
            raise KeyError("lost batch")

    with structlog.testing.capture_logs() as logs, pytest.raises(KeyError):
        app()
    (failed,) = [e for e in logs if e["event"] == "shutdown.body_failed"]
    assert "lost batch" in failed["error"]


def test_run_shares_one_drain_bound_with_the_drain_step() -> None:
    release = threading.Event()

    async def main(grace: spotgrace.AsyncGrace) -> None:
        def stuck() -> None:
            with grace.inflight():
                release.wait(30)

        threading.Thread(target=stuck, daemon=True).start()
        await asyncio.sleep(0.05)
        grace.request_shutdown()
        await asyncio.sleep(3600)

    start_t = time.monotonic()
    try:
        spotgrace.run(main, signals=(), exit_code="return", drain_timeout=2)
    finally:
        release.set()
    took = time.monotonic() - start_t
    assert took < 3.5, f"took {took:.1f}s: drained twice (2 s each)?"


def test_closed_blocks_leave_no_watchdog_thread_behind() -> None:
    for _ in range(5):
        with quiet() as grace:
            grace.request_shutdown()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        left = [t.name for t in threading.enumerate() if t.name == "spotgrace-watchdog"]
        if not left:
            break
        time.sleep(0.05)
    assert not left


@pytest.mark.slow
def test_ctrl_c_during_cleanup_still_restores_handlers_and_stands_the_watchdog_down() -> None:
    proc = start("ctrl_c_during_cleanup.py")
    try:
        code = proc.finish(timeout=30)
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert "interrupted; SIGTERM handler restored: True" in printed, proc.output()
    assert "a new block could be entered" in printed
    assert "still alive" in printed
    assert code == 0, proc.output()
