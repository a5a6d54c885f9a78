"""Regressions from the adversarial review of the fleet companion: events in odd
shapes or from elsewhere, SNS throttling, the CLI's redrive and error paths,
dry runs that read the state table, log context, and the templates.

Each test failed before its fix (see the commit that added it).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import hcl2
import pytest
from botocore.exceptions import ClientError

from spotgrace import ConfigError
from spotgrace._cli import main as cli_main
from spotgrace.fleet import (
    AwsPermanentError,
    AwsRetriesExhausted,
    FleetConfig,
    RetryPolicy,
    ServiceRef,
    classify,
    handler,
)
from spotgrace.fleet._handler import DLQ_RESERVE
from spotgrace.fleet._infra import cloudformation_template, render
from spotgrace.fleet._retry import is_retryable
from spotgrace.fleet._state import CLAIM_LEASE

from ._fleet import (  # noqa: F401 - fixtures
    ACCOUNT,
    REGION,
    Proxy,
    World,
    aws_env_fixture,
    clients_for,
    load_event,
    moto_url_fixture,
    proxy_fixture,
    tick,
    world_fixture,
)
from .test_fleet_infra import _unquote

pytestmark = pytest.mark.timeout(60)
TF_MAIN = Path(__file__).resolve().parent.parent / "infra" / "fleet" / "terraform" / "main.tf"


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttled", 429), ("KMSThrottling", 400), ("KmsThrottled", 400), ("Unmodelled", 429)],
)
def test_sns_and_kms_throttling_and_any_429_are_retryable(code: str, status: int) -> None:
    assert is_retryable(_client_error(code, status))


def test_sns_throttling_is_retried_and_failures_log_their_event(world: World, proxy: Proxy) -> None:
    """SNS says "Throttled" (HTTP 429): retried, not a permanent error. And the
    ERROR lines of a failed event name its cluster, service and task."""
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web)
    proxy.fail("Publish", "Throttled", 1, status=429)

    out = world.handle(
        world.interruption(task, group="service:web", event_id="e1"),
        config,
        clients=clients_for(proxy.url),
    )

    assert out["results"][0] | {"result": "alerted", "alerted": True} == out["results"][0]
    assert len(world.alerts()) == 1

    other = world.task("web")
    proxy.fail("DescribeServices", "AccessDeniedException", 1)
    with pytest.raises(AwsPermanentError):
        world.handle(
            world.interruption(other, group="service:web", event_id="e2"),
            config,
            clients=clients_for(proxy.url),
        )
    failed = [ln for ln in world.log_lines() if ln["level"] == "ERROR"]
    assert [ln["message"] for ln in failed] == [
        "event failed",
        "event sent to the dead-letter queue",
    ]
    for line in failed:
        assert (
            line | {"cluster": "prod", "service": "web", "task_arn": other, "event_id": "e2"}
            == line
        )
    assert "testing" not in world.logs.getvalue()  # the fake secret key, on the error path too
    assert "testing" not in json.dumps(world.dead_letters())
    duplicate = world.handle(world.interruption(task, group="service:web", event_id="e1"), config)
    assert duplicate["results"][0]["result"] == "duplicate-event"
    dup_line = world.log_lines()[-1]
    assert (dup_line["cluster"], dup_line["service"]) == ("prod", "web")  # not "prod/web"


def test_events_for_odd_or_foreign_services_are_ignored_not_dead_lettered(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_ACCOUNT_ID=ACCOUNT
    )
    odd = [
        {"group": "service:we/b"},
        {"group": "service:a:b"},
        {"group": "service: web"},
        {"group": "service:web", "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/pr:od"},
        # the same cluster and service names in another region, then another account
        {"group": "service:web", "clusterArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/prod"},
        {"group": "service:web", "clusterArn": f"arn:aws:ecs:{REGION}:999999999999:cluster/prod"},
    ]
    for n, detail in enumerate(odd):
        out = world.handle(world.interruption(task, event_id=f"odd-{n}", **detail), config)
        assert out["results"][0]["result"] == "ignored", detail

    assert world.dead_letters() == []
    assert world.desired(web) == 2
    with pytest.raises(ConfigError, match="12 digits"):
        FleetConfig.from_env(
            {"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_ACCOUNT_ID": "12"}
        )
    with pytest.raises(ConfigError, match="bad cluster/service name"):
        ServiceRef("prod", "web\n")


def test_dry_run_reads_the_state_table_and_still_writes_nothing(world: World) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_RESTORE_AFTER="0"
    )
    event = world.interruption(task, group="service:web")
    assert world.handle(event, config)["results"][0]["result"] == "scaled-out"
    assert world.desired(web) == 3
    world.alerts()
    table_before = world.clients.dynamodb.scan(TableName=world.table)["Items"]

    replay = world.handle(event, config, dry_run=True)
    world.stop_task(task)
    world.now += 120
    dry_tick = world.handle(tick(), config, dry_run=True)

    assert replay["results"][0]["result"] == "duplicate-event"  # as a real replay
    assert replay["planned"] == []
    assert dry_tick["results"][0]["result"] == "restored"  # it sees the pending restore
    assert dry_tick["planned"] == [{"call": "UpdateService", "service": "prod/web", "desired": 2}]
    assert world.desired(web) == 3
    assert world.clients.dynamodb.scan(TableName=world.table)["Items"] == table_before
    assert world.alerts() == []
    assert world.handle(tick("tick-2"), config)["results"][0]["result"] == "restored"
    assert world.desired(web) == 2


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(["fleet", *args])
    return code, out.getvalue(), err.getvalue()


def test_cli_redrives_a_dead_letter_message_as_it_is(
    world: World, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")
    proxy.fail("UpdateService", "AccessDeniedException", 1)
    with pytest.raises(AwsPermanentError):
        world.handle(
            world.interruption(task, group="service:web"), config, clients=clients_for(proxy.url)
        )
    (message,) = world.dead_letters()
    assert sorted(message) == ["error", "event", "request_id"]
    path = tmp_path / "dlq-message.json"
    path.write_text(json.dumps(message))
    for name, value in {
        "SPOTGRACE_FLEET_SERVICES": "prod/web",
        "SPOTGRACE_FLEET_ACTION": "scale-out",
        "SPOTGRACE_FLEET_TABLE": world.table,
        "SPOTGRACE_FLEET_MAX_EVENT_AGE": "1e12",  # the CLI's real clock: the event is old
    }.items():
        monkeypatch.setenv(name, value)

    code, out, err = _cli("handle", str(path), "--endpoint-url", world.url, "--region", REGION)

    assert code == 0, err
    assert json.loads(out)["results"][0]["result"] == "scaled-out"
    assert world.desired(web) == 3


def test_cli_handle_reports_botocore_errors_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("SPOTGRACE_FLEET_SERVICES", "prod/web")
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"id": "x", "source": "aws.ecs", "detail": {}}))

    code, _, err = _cli("handle", str(path), "--dry-run")

    assert code == 1
    assert "NoRegionError" in err


def test_templates_refuse_a_twin_that_is_the_service_itself() -> None:
    with pytest.raises(ConfigError, match="another service"):
        render("cfn", cluster="prod", services=["web"], twins={"web": "web"})
    code, _, err = _cli(
        "template", "--cluster", "prod", "--service", "web", "--fallback", "web=web"
    )
    assert code == 1
    assert "another service" in err


def test_terraform_function_waits_for_its_policy_and_matches_the_cfn_environment() -> None:
    with TF_MAIN.open() as fh:
        tf = _unquote(hcl2.load(fh))
    function = next(
        b["aws_lambda_function"]["fleet"] for b in tf["resource"] if "aws_lambda_function" in b
    )
    # CreateFunction checks the role's sqs:SendMessage on the DLQ: the inline policy first.
    assert "${aws_iam_role_policy.function}" in json.dumps(function.get("depends_on"))
    tf_env = set(function["environment"][0]["variables"])
    cfn = cloudformation_template(cluster="prod", services=["web"])
    cfn_env = set(cfn["Resources"]["Function"]["Properties"]["Environment"]["Variables"])
    assert tf_env == cfn_env
    assert "SPOTGRACE_FLEET_ACCOUNT_ID" in cfn_env


def test_throttling_forever_stops_before_the_lambda_timeout_and_the_claims_lease(
    world: World, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1000 attempts allowed, ECS throttles for ever. In Lambda the handler gives up
    when the invocation's remaining time (minus the DLQ reserve) runs out, and the
    event reaches the DLQ; without a Lambda budget (the CLI) it still stops before
    the claim's lease ends, after which another invocation could act alongside.
    Before, it retried for minutes, past any Lambda timeout and past the lease."""
    web = world.service("web", 2)
    task = world.task("web")
    for name, value in {
        "SPOTGRACE_FLEET_SERVICES": "prod/web",
        "SPOTGRACE_FLEET_DLQ_URL": world.dlq_url,
        "SPOTGRACE_FLEET_MAX_ATTEMPTS": "1000",
        "SPOTGRACE_FLEET_BASE_DELAY": "0.05",
        "SPOTGRACE_FLEET_MAX_DELAY": "0.2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    proxy.fail("DescribeServices", "ThrottlingException", 100_000)
    budget = DLQ_RESERVE + 1.0  # 1 s for the retries, the reserve for the DLQ

    class Context:
        aws_request_id = "lambda-req-deadline"

        def __init__(self) -> None:
            self.end = time.monotonic() + budget

        def get_remaining_time_in_millis(self) -> int:
            return int((self.end - time.monotonic()) * 1000)

    world.now = time.time()
    started = time.monotonic()
    with pytest.raises(AwsRetriesExhausted, match="out of time"):
        handler(world.interruption(task, group="service:web"), Context())
    took = time.monotonic() - started

    assert took < budget  # the retries stop at 1 s, leaving the reserve for the DLQ
    (message,) = world.dead_letters()
    assert "AwsRetriesExhausted" in message["error"]

    # No Lambda budget: a fake clock that the retries' sleeps advance.
    fake = [0.0]

    def advance(seconds: float) -> None:
        fake[0] += seconds

    retry = RetryPolicy(max_attempts=1000, base_delay=20.0, max_delay=60.0, sleep=advance)
    config = dataclasses.replace(
        world.config(web), retry=dataclasses.replace(retry, clock=lambda: fake[0])
    )
    with pytest.raises(AwsRetriesExhausted, match="out of time"):
        world.handle(
            world.interruption(task, group="service:web", event_id="cli"),
            config,
            clients=clients_for(proxy.url),
        )
    assert CLAIM_LEASE - DLQ_RESERVE - 60.0 <= fake[0] < CLAIM_LEASE - DLQ_RESERVE + 1e-6
    assert len(world.dead_letters()) == 1


def test_a_placement_alert_that_failed_is_sent_by_the_redrive(world: World, proxy: Proxy) -> None:
    web = world.service("web", 4, steady=False)
    twin = world.service("web-ondemand", 0)
    config = world.config(web, SPOTGRACE_FLEET_FALLBACK="prod/web=web-ondemand")
    event = world.service_action(web, "SERVICE_TASK_PLACEMENT_FAILURE", event_id="p1")
    proxy.fail("Publish", "AuthorizationError", 1, status=403)
    with pytest.raises(AwsPermanentError, match="AuthorizationError"):
        world.handle(event, config, clients=clients_for(proxy.url))
    assert world.desired(twin) == 4  # acted, but nobody was told

    redrive = world.handle(event, config)
    again = world.handle(
        world.service_action(web, "SERVICE_TASK_PLACEMENT_FAILURE", event_id="p2"), config
    )

    assert redrive["results"][0] | {"alerted": True} == redrive["results"][0]
    assert "alerted" not in again["results"][0]  # still one alert per episode
    assert [a["result"] for a in world.alerts()] == ["fallback-already-active"]
    assert world.desired(twin) == 4


def test_restore_never_goes_below_a_count_raised_by_someone_else(world: World) -> None:
    """2 tasks; an interruption scales out to 3; someone raises it to 4 (traffic); two
    more interruptions: scale out from 4, and restore to 4, not to 2."""
    web = world.service("web", 2)
    tasks = [world.task("web") for _ in range(3)]
    config = world.config(
        web, SPOTGRACE_FLEET_ACTION="scale-out", SPOTGRACE_FLEET_RESTORE_AFTER="0"
    )
    world.handle(world.interruption(tasks[0], group="service:web", event_id="i0"), config)
    assert world.desired(web) == 3
    world.clients.ecs.update_service(cluster="prod", service="web", desiredCount=4)

    for n, task in enumerate(tasks[1:], start=1):
        world.handle(world.interruption(task, group="service:web", event_id=f"i{n}"), config)
    assert world.desired(web) == 6
    for task in tasks:
        world.stop_task(task)
    world.now += 1

    assert world.handle(tick(), config)["results"][0]["result"] == "restored"
    assert world.desired(web) == 4
    assert any("someone else" in ln["message"] for ln in world.log_lines())


def test_a_task_arn_of_the_wrong_type_falls_back_to_resources() -> None:
    event = load_event("task-state-change-termination-notice")
    event["detail"]["taskArn"] = 12345
    assert classify(event).task_arn == event["resources"][0]


def test_a_flapping_shortage_doubles_the_next_hold_off(world: World) -> None:
    """Spot capacity that comes and goes: a new shortage soon after a fail-back doubles
    the next hold-off (up to 8x), so the twin and the alerts do not flip every 15 min;
    a shortage long after starts again from the configured hold-off."""
    web = world.service("web", 2)
    twin = world.service("web-ondemand", 0)
    config = world.config(web, SPOTGRACE_FLEET_FALLBACK="prod/web=web-ondemand")

    def shortage(event_id: str) -> dict[str, Any]:
        event = world.service_action(web, "SERVICE_TASK_PLACEMENT_FAILURE", event_id=event_id)
        result: dict[str, Any] = world.handle(event, config)["results"][0]
        world.handle(tick(f"steady-{event_id}"), config)  # steady again: the hold-off starts
        return result

    first = shortage("p1")
    world.now += 901
    assert world.handle(tick("t1"), config)["results"][0]["result"] == "failed-back"
    world.now += 60
    second = shortage("p2")
    world.now += 901
    held = world.handle(tick("t2"), config)["results"][0]
    world.now += 900
    back = world.handle(tick("t3"), config)["results"][0]
    world.now += 100_000
    third = shortage("p3")

    assert held["result"] == "holding-off"  # before: failed back again after 900 s
    assert (first["hold_off"], "flaps" in first) == (900, False)
    assert (second["hold_off"], second["flaps"]) == (1800, 1)
    assert back["result"] == "failed-back"
    assert (third["hold_off"], "flaps" in third) == (900, False)
    assert world.desired(twin) == 1


def test_a_failed_second_claim_releases_the_first_so_a_redrive_acts(
    world: World, proxy: Proxy
) -> None:
    """The event id is claimed, claiming the task ARN fails: the event claim must be
    released, or a redrive within its 5-minute lease is taken for a duplicate and
    the interruption is never acted on."""
    web = world.service("web", 2)
    task = world.task("web")
    config = world.config(web, SPOTGRACE_FLEET_ACTION="scale-out")
    event = world.interruption(task, group="service:web")
    proxy.fail("PutItem", "AccessDeniedException", 1, after=1)  # the second PutItem
    with pytest.raises(AwsPermanentError, match="PutItem"):
        world.handle(event, config, clients=clients_for(proxy.url))

    redrive = world.handle(event, config)

    assert redrive["results"][0]["result"] == "scaled-out"
    assert world.desired(web) == 3
