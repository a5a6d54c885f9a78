"""The companion's actions against moto in server mode: alert, scale-out and restore,
redeploy, replays, out-of-order events, unmanaged services, dry runs.

What moto cannot show is said where it matters (see tests/_fleet.py): running
counts follow desiredCount at once, forceNewDeployment only renews an id.
"""

from __future__ import annotations

import pytest

from spotgrace.fleet import AwsPermanentError, ServiceRef

from ._fleet import (  # noqa: F401 - fixtures
    World,
    aws_env_fixture,
    moto_url_fixture,
    tick,
    world_fixture,
)

pytestmark = pytest.mark.timeout(60)


def test_alert_on_termination_notice_without_group_asks_ecs_for_the_service(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    event = world.interruption(task)  # the knowledge-center sample: no `group`
    assert "group" not in event["detail"]

    out = world.handle(event, world.config(web))

    assert out["results"][0] | {"alerted": True} == out["results"][0]
    assert out["results"][0]["result"] == "alerted"
    alerts = world.alerts()
    assert len(alerts) == 1
    assert alerts[0]["service"] == "prod/web"
    assert alerts[0]["task_arn"] == task
    assert alerts[0]["event_id"] == event["id"]
    assert world.desired(web) == 2  # alert only: no capacity change


@pytest.mark.parametrize(
    ("sample", "detail"),
    [
        ("task-state-change-spot-interruption", {}),
        # Some interruption events come without stopCode: the stoppedReason prefix decides.
        (
            "task-state-change-spot-interruption",
            {"stopCode": None, "stoppedReason": "Your Spot Task was interrupted."},
        ),
    ],
    ids=["stopCode-SpotInterruption", "no-stopCode-stoppedReason-prefix"],
)
def test_alert_on_other_interruption_shapes(
    world: World, sample: str, detail: dict[str, str | None]
) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    event = world.interruption(task, sample=sample, group="service:web")
    for key, value in detail.items():
        if value is None:
            del event["detail"][key]
        else:
            event["detail"][key] = value

    out = world.handle(event, world.config(web))

    assert out["results"][0]["result"] == "alerted"
    assert [a["task_arn"] for a in world.alerts()] == [task]


def test_scale_out_sets_absolute_count_and_replays_do_not_add(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_SCALE_OUT_BY="2")
    event = world.interruption(task, group="service:web")

    results = [world.handle(event, config)["results"][0]["result"] for _ in range(3)]

    assert results == ["scaled-out", "duplicate-event", "duplicate-event"]
    assert world.desired(web) == 4  # 2 + 2, once
    assert len(world.alerts()) == 1


def test_later_events_of_the_same_task_are_duplicates_and_a_second_task_adds(world: World) -> None:
    web = world.service("web", 3)
    first, second = world.task("web"), world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTIONS="prod/web=scale-out")

    world.handle(world.interruption(first, group="service:web", event_id="e1"), config)
    # ECS sends more events for the same task (STOPPING, STOPPED) with new ids.
    again = world.interruption(first, group="service:web", event_id="e2", lastStatus="STOPPED")
    assert world.handle(again, config)["results"][0]["result"] == "duplicate-task"
    assert world.desired(web) == 4
    out = world.handle(world.interruption(second, group="service:web", event_id="e3"), config)
    assert out["results"][0] | {"baseline": 3, "target": 5} == out["results"][0]
    assert world.desired(web) == 5  # baseline 3 + 1 per interrupted task, not current + 1


def test_scale_out_restores_after_steady_and_tasks_stopped(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_RESTORE_AFTER="60"
    )
    world.handle(world.interruption(task, group="service:web"), config)
    assert world.desired(web) == 3
    steady = world.service_action(web, "SERVICE_STEADY_STATE", event_id="s1")

    # moto makes runningCount == desiredCount at once, so the service is "steady" right
    # away; only the interrupted task, still RUNNING, keeps the interruption going.
    assert world.handle(steady, config)["results"][0]["result"] == "waiting-for-steady"
    world.stop_task(task)
    world.now += 1
    out = world.handle(world.service_action(web, "SERVICE_STEADY_STATE", event_id="s2"), config)
    assert out["results"][0]["result"] == "holding-off"
    assert world.desired(web) == 3
    world.now += 61
    out = world.handle(tick(), config)
    assert out["results"][0]["result"] == "restored"
    assert world.desired(web) == 2
    # Nothing left to undo: a later tick does nothing.
    assert world.handle(tick("tick-2"), config)["results"][0]["result"] == "nothing-pending"
    assert world.desired(web) == 2


def test_restore_leaves_a_count_someone_else_changed(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_RESTORE_AFTER="0"
    )
    world.handle(world.interruption(task, group="service:web"), config)
    world.clients.ecs.update_service(cluster="prod", service="web", desiredCount=7)  # autoscaling
    world.stop_task(task)

    out = world.handle(tick(), config)

    assert out["results"][0]["result"] == "restore-skipped-changed"
    assert world.desired(web) == 7
    assert any(
        line["level"] == "WARNING" and "someone else" in line["message"]
        for line in world.log_lines()
    )


def test_service_tag_chooses_the_action(world: World) -> None:
    web = world.service("web", 2, tags={"spotgrace:fleet-action": "scale-out"})
    task = world.task("web")

    out = world.handle(world.interruption(task, group="service:web"), world.config(web))

    assert out["results"][0]["action"] == "scale-out"
    assert world.desired(web) == 3


def test_redeploy_forces_one_new_deployment_across_replays(world: World) -> None:
    web = world.service("web", 2, tags={"spotgrace:fleet-action": "redeploy"})
    task = world.task("web")
    before = world.describe(web)["deployments"][0]["id"]
    event = world.interruption(task, group="service:web")

    results = [world.handle(event, world.config(web))["results"][0]["result"] for _ in range(3)]

    assert results == ["redeployed", "duplicate-event", "duplicate-event"]
    after = world.describe(web)["deployments"]
    # moto's whole model of forceNewDeployment: the PRIMARY deployment gets a new id. It
    # cannot show the cost (every healthy task replaced, and placed on Spot again).
    assert len(after) == 1
    assert after[0]["id"] != before
    assert world.desired(web) == 2


def test_redeploy_is_skipped_while_a_deployment_is_in_progress(world: World) -> None:
    web = world.service("web", 2, steady=False, tags={"spotgrace:fleet-action": "redeploy"})
    task = world.task("web")
    before = world.describe(web)["deployments"][0]
    assert before["rolloutState"] == "IN_PROGRESS"

    out = world.handle(world.interruption(task, group="service:web"), world.config(web))

    assert out["results"][0]["result"] == "skipped-deployment-in-progress"
    assert world.describe(web)["deployments"][0]["id"] == before["id"]
    assert world.alerts()[0]["result"] == "skipped-deployment-in-progress"


def test_stopped_event_before_the_notice_still_acts_once(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")
    notice = world.interruption(task, group="service:web", event_id="notice")
    stopped = world.interruption(
        task, group="service:web", event_id="stopped", lastStatus="STOPPED"
    )

    assert world.handle(stopped, config)["results"][0]["result"] == "scaled-out"
    assert world.handle(notice, config)["results"][0]["result"] == "duplicate-task"
    assert world.desired(web) == 3


def test_steady_event_before_any_interruption_does_nothing(world: World) -> None:
    web = world.service("web", 2)
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")

    out = world.handle(world.service_action(web, "SERVICE_STEADY_STATE", event_id="s0"), config)

    assert out["results"][0]["result"] == "nothing-pending"
    assert world.desired(web) == 2


def test_stale_interruption_only_alerts(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_MAX_EVENT_AGE="600"
    )
    event = world.interruption(task, group="service:web", time="2023-01-01T00:00:00Z")

    out = world.handle(event, config)

    assert out["results"][0]["result"] == "stale-alert-only"
    assert world.desired(web) == 2
    assert len(world.alerts()) == 1


def test_unmanaged_service_and_standalone_task_are_ignored(world: World) -> None:
    web = world.service("web", 2)
    world.service("other", 1)
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")
    other_task = world.task("other")
    standalone = world.clients.ecs.run_task(
        cluster="prod", taskDefinition="web", launchType="FARGATE"
    )

    a = world.handle(world.interruption(other_task), config)["results"][0]
    b = world.handle(world.interruption(standalone["tasks"][0]["taskArn"]), config)["results"][0]

    assert (a["result"], a["reason"]) == ("ignored", "service not managed")
    assert (b["result"], b["reason"]) == ("ignored", "not a service's task")
    assert world.alerts() == []


def test_dry_run_reads_but_writes_nothing(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")

    out = world.handle(world.interruption(task, group="service:web"), config, dry_run=True)

    assert out["results"][0]["result"] == "scaled-out"
    calls = {p["call"] for p in out["planned"]}
    assert calls == {"UpdateService", "Publish"}
    assert world.desired(web) == 2
    assert world.alerts() == []
    table = world.clients.dynamodb.scan(TableName=world.table)
    assert table["Count"] == 0


def test_missing_service_fails_loudly_into_the_dlq(world: World) -> None:
    ghost = ServiceRef("prod", "ghost")
    task = world.task("ghost")  # a task whose service does not exist
    event = world.interruption(task, group="service:ghost")

    with pytest.raises(AwsPermanentError, match="ServiceNotFound"):
        world.handle(event, world.config(ghost))

    dead = world.dead_letters()
    assert len(dead) == 1
    assert dead[0]["event"]["id"] == event["id"]
    assert "ServiceNotFound" in dead[0]["error"]
    errors = [line for line in world.log_lines() if line["level"] == "ERROR"]
    assert errors
    assert errors[0]["request_id"] == "req-test"
    # The claim was released: fixing the cause and replaying acts.
    world.service("ghost", 1)
    assert world.handle(event, world.config(ghost))["results"][0]["result"] == "alerted"


def test_json_log_lines_carry_the_context(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")

    world.handle(world.interruption(task, group="service:web"), world.config(web))

    line = next(ln for ln in world.log_lines() if ln["message"] == "interruption handled")
    assert line["level"] == "INFO"
    assert line["timestamp"].endswith("Z")
    expected = {"cluster": "prod", "service": "web", "task_arn": task, "request_id": "req-test"}
    assert line | expected == line
    assert (line["action"], line["result"]) == ("alert", "alerted")
    assert "testing" not in world.logs.getvalue()  # the fake secret key never appears
