"""spotgrace.ecs task scale-in protection against the fake ECS agent on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from spotgrace._core._errors import ConfigError, StateError
from spotgrace.ecs import ProtectionError, TaskProtection, protect
from spotgrace.testing import FakeEndpoints


@pytest.fixture
def fake() -> Iterator[FakeEndpoints]:
    with FakeEndpoints() as server:
        yield server


def enabled(fake: FakeEndpoints) -> object:
    return fake.protection.get("ProtectionEnabled")


def puts(fake: FakeEndpoints) -> list[int]:
    return [r.status for r in fake.requests("protection") if r.method == "PUT"]


def test_enabled_inside_and_disabled_after(fake: FakeEndpoints) -> None:
    with protect(minutes=30, environ=fake.env()) as protection:
        assert enabled(fake) is True
        state = protection.state()
        assert state is not None
        assert state.enabled
        assert state.expiration is not None
    assert enabled(fake) is False
    assert puts(fake) == [200, 200]


def test_disabled_after_an_exception(fake: FakeEndpoints) -> None:
    seen: list[object] = []

    def job() -> None:
        with protect(environ=fake.env()):
            seen.append(enabled(fake))
            raise KeyError("job failed")

    with pytest.raises(KeyError):
        job()
    assert seen == [True]
    assert enabled(fake) is False


@pytest.mark.asyncio
async def test_async_with(fake: FakeEndpoints) -> None:
    async with protect(minutes=5, environ=fake.env()):
        assert enabled(fake) is True
    assert enabled(fake) is False


def test_decorator_on_a_sync_function(fake: FakeEndpoints) -> None:
    @protect(environ=fake.env())
    def job(x: int) -> int:
        assert enabled(fake) is True
        return x * 2

    assert job(21) == 42
    assert job(1) == 2
    assert job.__name__ == "job"
    assert enabled(fake) is False
    assert puts(fake) == [200, 200, 200, 200]


@pytest.mark.asyncio
async def test_decorator_on_an_async_function(fake: FakeEndpoints) -> None:
    @protect(environ=fake.env())
    async def job() -> str:
        assert enabled(fake) is True
        await asyncio.sleep(0)
        return "done"

    assert await job() == "done"
    assert enabled(fake) is False


def test_overlapping_blocks_enable_once_and_disable_on_the_last_exit(
    fake: FakeEndpoints,
) -> None:
    shared = TaskProtection(environ=fake.env())
    release = threading.Event()
    inside = threading.Barrier(3)

    def worker() -> None:
        with shared.protect():
            inside.wait(10)
            release.wait(10)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(10)
    assert enabled(fake) is True
    release.set()
    for t in threads:
        t.join(10)
    assert enabled(fake) is False
    assert puts(fake) == [200, 200]  # one enable, one disable


def test_long_work_is_re_extended(fake: FakeEndpoints) -> None:
    with capture_logs() as logs, protect(minutes=1, extend_every=0.2, environ=fake.env()):
        deadline = time.monotonic() + 15
        while len(puts(fake)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert enabled(fake) is True
    assert len(puts(fake)) >= 4  # enable, >= 2 renewals, disable
    assert any(e["event"] == "protection.extended" for e in logs)
    assert enabled(fake) is False


def test_failure_body_is_logged_and_the_work_runs(fake: FakeEndpoints) -> None:
    fake.fail("protection", "failure", reason="TASK_NOT_VALID")
    ran = False
    with capture_logs() as logs, protect(environ=fake.env()):
        ran = True
    assert ran
    (failed,) = [e for e in logs if e["event"] == "protection.failed"]
    assert "TASK_NOT_VALID" in failed["error"]


def test_failure_body_raises_when_protection_is_required(fake: FakeEndpoints) -> None:
    fake.fail("protection", "failure", reason="TASK_NOT_VALID")
    with (
        pytest.raises(ProtectionError, match="TASK_NOT_VALID"),
        protect(required=True, environ=fake.env()),
    ):
        pytest.fail("the body must not run unprotected")


def test_throttling_is_retried_with_backoff(fake: FakeEndpoints) -> None:
    fake.fail("protection", "throttle", times=2)
    with protect(environ=fake.env()):
        assert enabled(fake) is True
    assert puts(fake) == [400, 400, 200, 200]


def test_server_errors_are_retried_then_given_up(fake: FakeEndpoints) -> None:
    fake.fail("protection", "status", status=503, times=None)
    with capture_logs() as logs, protect(retries=2, environ=fake.env()):
        pass
    events = [e["event"] for e in logs]
    assert events.count("protection.retry") == 4  # 2 on enable, 2 on disable
    assert events.count("protection.failed") == 2
    assert puts(fake) == [503] * 6


def test_error_body_for_a_bad_request_is_not_retried(fake: FakeEndpoints) -> None:
    fake.fail("protection", "status", status=400, times=1)
    with capture_logs() as logs, protect(environ=fake.env()):
        pass
    assert puts(fake) == [400]  # a definite refusal: nothing to turn off afterwards
    (failed,) = [e for e in logs if e["event"] == "protection.failed"]
    assert "HTTP 400" in failed["error"]


@pytest.mark.parametrize("kind", ["garbage", "reset", "slow"])
def test_transport_faults_never_escape(fake: FakeEndpoints, kind: str) -> None:
    fake.fail("protection", kind, times=None, delay=2.0)
    with capture_logs() as logs, protect(retries=1, timeout=0.5, environ=fake.env()):
        pass
    assert [e["event"] for e in logs].count("protection.failed") == 2


def test_outside_ecs_is_a_logged_no_op() -> None:
    with capture_logs() as logs, protect(environ={}) as protection:
        assert protection.state() is None
    assert [e["event"] for e in logs] == ["protection.skipped"]


@pytest.mark.parametrize("minutes", [0, 2881, True, 1.5])
def test_minutes_are_validated(minutes: object) -> None:
    with pytest.raises(ValueError, match="minutes"):
        protect(minutes=minutes, environ={})  # type: ignore[arg-type]


def test_agent_uri_outside_the_allow_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="ECS_AGENT_URI"):
        protect(environ={"ECS_AGENT_URI": "http://203.0.113.5/api/x"})


def test_exit_without_enter_is_a_state_error() -> None:
    with pytest.raises(StateError):
        TaskProtection(environ={}).exit()
