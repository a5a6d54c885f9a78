"""The state machine, budget and sequence, in-process, with a fake clock where time matters."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import spotgrace
from spotgrace import State
from spotgrace._core._eventlog import SHARED_EVENTS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def names(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs]


def quiet(**kwargs: Any) -> spotgrace.Graceful:
    """A graceful() that installs no handlers and never exits the test process."""
    kwargs.setdefault("signals", ())
    kwargs.setdefault("exit_code", "return")
    return spotgrace.graceful(**kwargs)


def test_states_in_order_and_runs_once(logs: list[dict[str, Any]]) -> None:
    seen: list[State] = []
    with quiet() as grace:
        grace.on_shutdown(lambda: seen.append(grace.state))
        assert grace.state is State.RUNNING
        assert grace.ready
        assert not grace.stopping
        grace.request_shutdown("deploy")
        assert grace.state is State.DRAINING
        assert not grace.ready
        assert grace.wait(timeout=5)
        grace.request_shutdown("again")  # no effect
        assert grace.notice is not None
        assert grace.notice.reason == "deploy"
        assert grace.notice.source == "manual"
    assert seen == [State.CLEANING]
    assert grace.state is State.DONE
    assert names(logs).count("shutdown.started") == 1
    assert names(logs).count("shutdown.finished") == 1


def test_remaining_follows_the_clock(clock: FakeClock) -> None:
    with quiet(stop_timeout=30, margin=2, clock=clock) as grace:
        assert grace.remaining() == 28  # the whole budget before a notice
        clock.advance(100)
        assert grace.remaining() == 28
        grace.request_shutdown()
        clock.advance(10)
        assert grace.remaining() == pytest.approx(18)
        clock.advance(50)
        assert grace.remaining() == 0


def test_within_moves_the_deadline_earlier_never_later(clock: FakeClock) -> None:
    with quiet(stop_timeout=30, margin=3, clock=clock) as grace:
        grace.request_shutdown("spot notice", source="watch", within=10)
        assert grace.remaining() == pytest.approx(7)  # 10 - margin
        grace.request_shutdown("later notice", within=100)
        assert grace.remaining() == pytest.approx(7)
        grace.request_shutdown("sooner", within=4)
        assert grace.remaining() == pytest.approx(2)  # max(4 - 3, 4 / 2)
        grace.request_shutdown("too late", within=1)
        assert grace.remaining() == pytest.approx(0.5)  # never "already late"


def test_request_shutdown_validates_within() -> None:
    with quiet() as grace, pytest.raises(ValueError, match="within"):
        grace.request_shutdown(within=-1)


def test_request_shutdown_before_entering_is_a_state_error() -> None:
    g = quiet()
    with pytest.raises(spotgrace.StateError, match="entered"):
        g._c.request_shutdown("x", source="manual", within=None)


def test_drain_delay_keeps_serving_then_stopping() -> None:
    with quiet(stop_timeout=10, drain_delay=0.3) as grace:
        grace.request_shutdown()
        assert not grace.ready
        assert not grace.stopping  # the lame-duck period: still serving
        start = time.monotonic()
        assert grace.wait(timeout=10)
        assert time.monotonic() - start >= 0.25


def test_a_notice_with_a_near_deadline_cuts_the_lame_duck_short() -> None:
    with quiet(stop_timeout=30, margin=3, drain_delay=10) as grace:
        start = time.monotonic()
        grace.request_shutdown("spot notice", source="watch", within=4)  # deadline in 2 s
        assert grace.wait(timeout=8)
        assert time.monotonic() - start < 5, "the 10 s lame duck ignored the 2 s deadline"


def test_a_nearer_notice_shortens_a_lame_duck_under_way() -> None:
    with quiet(stop_timeout=30, margin=3, drain_delay=10) as grace:
        grace.request_shutdown("deploy")
        assert not grace.wait(timeout=0.2)  # in the lame duck
        first = grace.notice
        start = time.monotonic()
        grace.request_shutdown("spot notice", source="watch", within=4)
        assert grace.wait(timeout=8)
        assert time.monotonic() - start < 5
        assert first is not None
        assert grace.notice is not None
        assert grace.notice.deadline < first.deadline  # the notice shows the moved deadline
        assert grace.notice.reason == "deploy"


def test_wait_timeout_returns_false_while_running() -> None:
    with quiet() as grace:
        assert grace.wait(timeout=0.05) is False


def test_drain_waits_for_work_in_another_thread() -> None:
    order: list[str] = []
    entered = threading.Event()
    with quiet() as grace:

        @grace.on_shutdown
        def hook() -> None:
            order.append("hook")

        def job() -> None:
            with grace.inflight():
                entered.set()
                time.sleep(0.3)
                order.append("job done")

        threading.Thread(target=job).start()
        entered.wait(5)
        grace.request_shutdown()
    assert order == ["job done", "hook"]
    assert grace.statistics()["inflight_total"] == 1


def test_decorated_function_is_in_flight() -> None:
    with quiet() as grace:

        @grace.inflight()
        def work() -> int:
            return grace.statistics()["inflight"]  # type: ignore[no-any-return]

        assert work() == 1
        assert grace.statistics()["inflight"] == 0


@pytest.mark.asyncio
async def test_async_drain_timeout_cancels_tasks_in_flight(logs: list[dict[str, Any]]) -> None:
    cancelled = asyncio.Event()

    async with quiet(drain_timeout=0.2) as grace:

        async def stuck() -> None:
            async with grace.inflight():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

        task = asyncio.create_task(stuck())
        await asyncio.sleep(0.01)
        grace.request_shutdown()
    assert cancelled.is_set()
    assert task.cancelled()
    (timeout,) = [e for e in logs if e["event"] == "drain.timeout"]
    assert timeout["cancelled"] == 1


@pytest.mark.asyncio
async def test_async_decorator_and_wait() -> None:
    async with quiet() as grace:

        @grace.inflight()
        async def work() -> int:
            await asyncio.sleep(0)
            return grace.statistics()["inflight"]  # type: ignore[no-any-return]

        assert await work() == 1
        assert await grace.wait(timeout=0.01) is False
        grace.request_shutdown()
        assert await grace.wait(timeout=5) is True


def test_failing_hook_is_logged_and_the_rest_run(logs: list[dict[str, Any]]) -> None:
    ran: list[str] = []
    with quiet() as grace:

        @grace.on_shutdown(order=2)
        def after() -> None:
            ran.append("after")

        @grace.on_shutdown(order=1)
        def broken() -> None:
            raise RuntimeError("boom")

    assert ran == ["after"]
    (failed,) = [e for e in logs if e["event"] == "hook.failed"]
    assert failed["hook"].endswith("broken")
    assert isinstance(failed["exc_info"], RuntimeError)
    assert grace.statistics()["hooks_failed"] == 1


def test_hook_timeouts_are_capped_by_the_fake_clock(
    clock: FakeClock, logs: list[dict[str, Any]]
) -> None:
    with quiet(stop_timeout=20, margin=2, clock=clock) as grace:

        @grace.on_shutdown(order=1, timeout=60)
        def uses_the_clock() -> None:
            clock.advance(17.95)  # leaves 0.05 s of the 18 s budget, less the reserve

        @grace.on_shutdown(order=2)
        def too_late() -> None:
            raise AssertionError("must be skipped: no time left")

        grace.request_shutdown()
    # The block's exit waits for the event writer only within the budget, which the
    # fake clock has used up: wait here (on a busy machine the events came late).
    assert SHARED_EVENTS.flush(10)
    started = [e for e in logs if e["event"] == "hook.started"]
    assert started[0]["timeout"] == pytest.approx(18 - 0.2, abs=0.01)  # capped, not 60
    skipped = [e for e in logs if e["event"] == "hook.skipped"]
    assert [e["hook"].split(".")[-1] for e in skipped] == ["too_late"]


def test_later_explicit_timeouts_are_reserved(logs: list[dict[str, Any]]) -> None:
    with quiet(stop_timeout=20, margin=2) as grace:

        @grace.on_shutdown(order=1)
        def greedy() -> None: ...

        @grace.on_shutdown(order=2, timeout=5)
        def important() -> None: ...

        grace.request_shutdown()
    first = next(e for e in logs if e["event"] == "hook.started")
    assert first["timeout"] == pytest.approx(18 - 0.2 - 5, abs=0.1)


def test_body_ending_without_notice_still_runs_hooks_and_returns() -> None:
    ran: list[str] = []
    with quiet() as grace:
        grace.on_shutdown(lambda: ran.append("hook"))
    assert ran == ["hook"]
    assert grace.notice is not None
    assert grace.notice.source == "exit"


def test_body_raising_runs_hooks_and_propagates() -> None:
    ran: list[str] = []
    g = quiet()

    def app() -> None:
        with g as grace:
            grace.on_shutdown(lambda: ran.append("hook"))
            raise KeyError("x")

    with pytest.raises(KeyError):
        app()
    assert ran == ["hook"]
    assert g._c.notice is not None
    assert g._c.notice.source == "error"


def test_statistics_shape() -> None:
    with quiet() as grace:
        stats = grace.statistics()
    assert stats["state"] == "running"
    assert {"inflight", "inflight_peak", "inflight_total", "remaining"} <= set(stats)


def test_a_late_notice_counts_the_lame_duck_from_the_signal(
    clock: FakeClock, logs: list[dict[str, Any]]
) -> None:
    # Read 0.3 s after it came: the deadline and the lame duck (capped at half
    # of the 2.5 s budget, counted from the signal) both count from the signal.
    with quiet(stop_timeout=3, margin=0.5, drain_delay=2.4, clock=clock) as grace:
        grace._c.begin(source="signal", reason="received SIGTERM", sig=None, within=None, late=0.3)
        assert grace.remaining() == pytest.approx(2.2)
        assert not grace.stopping  # 0.95 s of lame duck left
    started = next(e for e in logs if e["event"] == "shutdown.started")
    assert started["drain_delay"] == 1.25
    assert started["late"] == 0.3


def test_a_notice_read_after_the_lame_duck_stops_intake_at_once(clock: FakeClock) -> None:
    with quiet(stop_timeout=30, margin=3, drain_delay=0.2, clock=clock) as grace:
        grace._c.begin(source="signal", reason="received SIGTERM", sig=None, within=None, late=0.3)
        assert grace.stopping
