"""Races between invocations, made deterministic: threads against one moto server,
paused at a chosen AWS call (a wrapper around the companion's ECS reads and
writes) until the other invocation got somewhere. Each test failed before its
fix: two tasks interrupted together forced two deployments; a tick and a
steady-state event both failed back and both alerted; a scale-out racing a
restore took the count being undone as its baseline, so the service never came
back to its own size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import spotgrace.fleet._aws as fleet_aws

from ._fleet import (  # noqa: F401 - fixtures
    Proxy,
    World,
    aws_env_fixture,
    clients_for,
    moto_url_fixture,
    proxy_fixture,
    tick,
    world_fixture,
)

pytestmark = pytest.mark.timeout(60)
WAIT = 20.0  # generous: a barrier only fails if the other side never arrives


@pytest.fixture(name="pause")
def pause_fixture(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``pause(method, when)``: wrap ``Ecs.<method>``; ``when(self, args)`` runs before
    (``after=False``) or after the real call in the calling thread and may block."""

    def install(method: str, when: Callable[..., None], *, after: bool = True) -> None:
        real = getattr(fleet_aws.Ecs, method)

        def wrapped(self: Any, *args: Any) -> Any:
            if not after:
                when(self, *args)
            out = real(self, *args)
            if after:
                when(self, *args)
            return out

        monkeypatch.setattr(fleet_aws.Ecs, method, wrapped)

    return install


def _run(target: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    def body() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_two_tasks_interrupted_together_force_one_deployment(
    world: World, proxy: Proxy, pause: Callable[..., None]
) -> None:
    web = world.service("web", 2, tags={"spotgrace:fleet-action": "redeploy"})
    tasks = [world.task("web"), world.task("web")]
    config = world.config(web)
    both_read = threading.Barrier(2, timeout=WAIT)
    pause("describe", lambda self, ref: both_read.wait())  # both saw "no deployment"
    results: list[str] = []
    errors: list[BaseException] = []

    def deliver(task: str) -> Callable[[], None]:
        def go() -> None:
            event = world.interruption(task, group="service:web", event_id=task[-8:])
            out = world.handle(event, config, clients=clients_for(proxy.url))
            results.append(out["results"][0]["result"])

        return go

    threads = [_run(deliver(t), errors) for t in tasks]
    for t in threads:
        t.join(WAIT * 2)

    assert errors == []
    assert sorted(results) == ["redeployed", "skipped-deployment-in-progress"]
    assert proxy.seen.count("UpdateService") == 1


def test_a_tick_and_a_steady_event_fail_back_once_and_alert_once(
    world: World, pause: Callable[..., None]
) -> None:
    web = world.service("web", 2)
    twin = world.service("web-ondemand", 0)
    config = world.config(web, SPOTGRACE_FLEET_FALLBACK="prod/web=web-ondemand")
    world.handle(world.service_action(web, "SERVICE_TASK_PLACEMENT_FAILURE", event_id="p1"), config)
    world.handle(tick("t0"), config)  # steady from now on
    world.now += config.hold_off + 1
    world.alerts()
    assert world.desired(twin) == 1
    both_read = threading.Barrier(2, timeout=WAIT)
    seen: set[int] = set()

    def first_read_of_web(self: Any, ref: Any) -> None:
        if ref.service == "web" and threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            both_read.wait()  # both decided "steady long enough"

    pause("describe", first_read_of_web)
    results: list[str] = []
    errors: list[BaseException] = []
    events = [tick("t1"), world.service_action(web, "SERVICE_STEADY_STATE", event_id="s1")]

    def deliver(event: dict[str, Any]) -> Callable[[], None]:
        return lambda: results.append(
            world.handle(event, config, clients=clients_for(world.url))["results"][0]["result"]
        )

    threads = [_run(deliver(e), errors) for e in events]
    for t in threads:
        t.join(WAIT * 2)

    assert errors == []
    assert sorted(results) == ["failed-back", "nothing-pending"]
    assert world.desired(twin) == 0
    assert [a["result"] for a in world.alerts()] == ["failed-back"]


def test_a_scale_out_racing_a_restore_keeps_the_services_own_size(
    world: World, pause: Callable[..., None]
) -> None:
    """Two interleavings of an interruption P and a restore R. First, P reads the service
    (3: still scaled out for T1) while R restores it to 2: P must scale out from 2, and
    the next restore end at 2. Second, R has committed but not yet set its restore."""
    web = world.service("web", 2)
    t1, t2, t3, t4 = (world.task("web") for _ in range(4))
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_RESTORE_AFTER="0"
    )
    world.handle(world.interruption(t1, group="service:web", event_id="i1"), config)
    world.stop_task(t1)
    assert world.desired(web) == 3
    p_read, r_done = threading.Event(), threading.Event()
    p_thread: list[int] = []

    def hold_p(self: Any, ref: Any) -> None:
        if threading.get_ident() in p_thread and not p_read.is_set():
            p_read.set()
            assert r_done.wait(WAIT)

    pause("describe", hold_p)
    errors: list[BaseException] = []

    def interruption() -> None:
        p_thread.append(threading.get_ident())
        event = world.interruption(t2, group="service:web", event_id="i2")
        world.handle(event, config, clients=clients_for(world.url))

    p = _run(interruption, errors)
    assert p_read.wait(WAIT)
    assert world.handle(tick("t1"), config)["results"][0]["result"] == "restored"
    r_done.set()
    p.join(WAIT * 2)

    assert errors == []
    assert world.desired(web) == 3  # 2 + 1 for t2, not 3 + 1
    world.stop_task(t2)
    world.now += 1
    assert world.handle(tick("t2"), config)["results"][0]["result"] == "restored"
    assert world.desired(web) == 2

    # Second interleaving: R has committed its restore (3 -> 2) but not yet set it when
    # P arrives. P sees the pending undo and scales out from 2; R's late "2" is followed
    # by P's target, whatever order the two UpdateService calls land in.
    world.handle(world.interruption(t3, group="service:web", event_id="i3"), config)
    assert world.desired(web) == 3
    world.stop_task(t3)
    world.now += 1
    r_at_set, p_done = threading.Event(), threading.Event()
    r_thread: list[int] = []

    def hold_r(self: Any, ref: Any, count: int) -> None:
        if threading.get_ident() in r_thread and not r_at_set.is_set():
            r_at_set.set()
            assert p_done.wait(WAIT)

    pause("set_desired", hold_r, after=False)
    results: list[str] = []

    def reconcile() -> None:
        r_thread.append(threading.get_ident())
        results.append(world.handle(tick("t5"), config)["results"][0]["result"])

    r = _run(reconcile, errors)
    assert r_at_set.wait(WAIT)
    out = world.handle(world.interruption(t4, group="service:web", event_id="i5"), config)
    p_done.set()
    r.join(WAIT * 2)

    assert errors == []
    assert results == ["restored"]
    assert out["results"][0] | {"baseline": 2, "target": 3} == out["results"][0]
    assert world.desired(web) == 3  # R's late "2" was followed by P's target
    world.stop_task(t4)
    world.now += 1
    assert world.handle(tick("t6"), config)["results"][0]["result"] == "restored"
    assert world.desired(web) == 2
