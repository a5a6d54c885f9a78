"""Every example runs as written and shuts down gracefully on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ._proc import ROOT, kill_quietly, start

EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow


def test_every_example_is_exercised_by_a_test() -> None:
    tests = " ".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    missing = [p.name for p in EXAMPLES.glob("*.py") if p.name not in tests]
    assert not missing, f"examples that no test runs: {missing}"


def test_worker_py_finishes_the_job_in_hand() -> None:
    proc = start(EXAMPLES / "worker.py")
    try:
        proc.wait_for_line("worker ready")
        proc.wait_for_line("done job 1")
        time.sleep(0.2)  # mid-job
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    printed = proc.printed()
    assert printed.index("closed connections") < next(
        i for i, line in enumerate(printed) if line.startswith("flushed metrics")
    )
    stopping = proc.event("shutdown.stopping")
    assert stopping["inflight"] == 1, "SIGTERM should have landed mid-job"
    assert proc.event("drain.finished")
    assert proc.event("shutdown.finished")["clean"] is True


def test_async_service_py_drains_units_before_cancelling_main() -> None:
    proc = start(EXAMPLES / "async_service.py")
    try:
        proc.wait_for_line("service ready")
        proc.wait_for_line("unit done")
        proc.signal(signal.SIGTERM)
        code = proc.finish()
    finally:
        kill_quietly(proc)
    assert code == 0, proc.output()
    events = proc.events()
    stop_i = next(i for i, e in enumerate(events) if e["event"] == "shutdown.stopping")
    assert events[stop_i]["inflight"] > 0
    # Units in flight at `stopping` completed (printed after it), none were cancelled.
    after = proc.lines[proc.lines.index(next(x for x in proc.lines if "shutdown.stopping" in x)) :]
    assert any("unit done" in line for line in after)
    assert proc.event("drain.started")["inflight"] == 0
    assert "pool closed" in proc.printed()
    assert proc.event("shutdown.finished")["clean"] is True
