"""Verdicts that tell the truth: hooks that exit, hooks registered late, run()'s cancellations."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

import spotgrace
from spotgrace._graceful._verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
EXITS_APP = ROOT / "tests" / "programs" / "exits_app.py"


def _raises(exc: BaseException) -> Any:
    async def boom() -> None:
        raise exc

    return boom


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_sync_hook_returning_an_awaitable_that_exits_counts_as_failed_and_the_rest_run(
    exc: BaseException,
) -> None:
    ran: list[str] = []
    with (
        structlog.testing.capture_logs() as logs,
        spotgrace.graceful(signals=(), exit_code="return", stop_timeout=10) as grace,
    ):
        grace.on_shutdown(lambda: ran.append("later"), order=1, name="later")
        grace.on_shutdown(lambda: _raises(exc)(), name="returns-awaitable")
        grace.request_shutdown()
    assert ran == ["later"]
    finished = next(e for e in logs if e["event"] == "shutdown.finished")
    assert finished["failed"] == 1
    assert finished["finished"] == 1
    assert not finished["clean"]
    assert grace.exit_code == 70


def test_hook_registered_after_the_cleanup_is_reported_not_silently_dropped() -> None:
    with spotgrace.graceful(signals=(), exit_code="return", stop_timeout=10) as grace:
        grace.request_shutdown()
    with structlog.testing.capture_logs() as logs:
        grace.on_shutdown(lambda: None, name="too-late")
        # Events are written by the event-writer thread: wait for it (bounded).
        end = time.monotonic() + 5
        while not any(e["event"] == "hook.late" for e in logs) and time.monotonic() < end:
            time.sleep(0.01)
    (late,) = [e for e in logs if e["event"] == "hook.late"]
    assert late["hook"] == "too-late"
    assert late["log_level"] == "warning"


def test_a_late_hook_makes_the_verdict_unclean() -> None:
    verdict = Verdict()
    verdict.late_hook("too-late")
    code, why = verdict.decide({"clean": True, "drained": True, "cancelled": 0}, None)
    assert code == 70
    assert "too-late" in why


def test_incomplete_wins_over_unclean_and_systemexit_over_both() -> None:
    verdict = Verdict()
    verdict.mark_incomplete("half done")
    unclean = {"clean": False, "drained": True, "failed": 1}
    assert verdict.decide(unclean, None)[0] == 75
    assert verdict.decide(unclean, SystemExit(9))[0] == 9
    assert verdict.decide(unclean, SystemExit("message"))[0] == 1


def test_async_block_drain_timeout_is_unclean() -> None:
    async def main() -> int | None:
        async with spotgrace.graceful(
            signals=(), exit_code="return", stop_timeout=10, drain_timeout=0.2
        ) as grace:

            async def work() -> None:
                async with grace.inflight():
                    await asyncio.sleep(30)

            task = asyncio.create_task(work())
            await asyncio.sleep(0)
            grace.request_shutdown()
        assert task.cancelled()
        return grace.exit_code

    assert asyncio.run(main()) == 70


@pytest.mark.slow
def test_simulate_says_not_clean_when_run_cancelled_work() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    cmd = [sys.executable, "-m", "spotgrace", "simulate", "--interrupt-after", "1",
           "--stop-timeout", "6", "--", sys.executable, str(EXITS_APP), "run-cancel"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Verdict: NOT CLEAN" in proc.stdout
    assert "3 tasks of work cancelled" in proc.stdout
