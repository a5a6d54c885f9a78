"""The EventBridge patterns against the recorded sample events and near-misses.

moto does not implement ``TestEventPattern`` (the first test pins that down),
so each pattern becomes a real rule in moto's EventBridge with an SQS target,
every event is sent with PutEvents, and what reaches each queue is what the
rule matched. ``spotgrace.fleet.matches`` (the small matcher the handler and
the CLI use) must agree with moto on every case, and with what we expect.
moto's matcher is not AWS's either: the cases stay within the syntax both
document (exact values, ``prefix``, ``$or``, nesting).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from spotgrace.fleet import (
    EventKind,
    classify,
    interruption_pattern,
    matches,
    placement_failure_pattern,
    steady_state_pattern,
)

from ._fleet import (  # noqa: F401 - fixtures
    aws_env_fixture,
    boto_client,
    load_event,
    moto_url_fixture,
    reset_moto,
)

pytestmark = pytest.mark.timeout(60)

TN = load_event("task-state-change-termination-notice")
SI = load_event("task-state-change-spot-interruption")
PF = load_event("service-action-placement-failure")


def variant(base: dict[str, Any], *, drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """``base`` with top-level changes; ``detail__x=...`` changes detail.x (None removes)."""
    event = copy.deepcopy(base)
    for key in drop:
        event["detail"].pop(key, None)
    for key, value in changes.items():
        if key.startswith("detail__"):
            event["detail"][key.removeprefix("detail__")] = value
        else:
            event[key.replace("_", "-")] = value
    return event


STEADY = variant(
    PF,
    drop=("reason", "capacityProviderArns"),
    detail__eventName="SERVICE_STEADY_STATE",
    detail__eventType="INFO",
)

# (case, event, kinds it must match)
CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("termination-notice", TN, {"interruption"}),
    ("spot-interruption", SI, {"interruption"}),
    ("no-stopCode-reason-prefix", variant(TN, drop=("stopCode",)), {"interruption"}),
    (
        "no-stopCode-reason-prefix-only",
        variant(SI, drop=("stopCode",), detail__stoppedReason="Your Spot Task was interrupted."),
        {"interruption"},
    ),
    ("placement-failure", PF, {"placement"}),
    ("steady-state", STEADY, {"steady"}),
    # near-misses
    (
        "user-initiated-stop",
        variant(
            TN,
            detail__stopCode="UserInitiated",
            detail__stoppedReason="Scaling activity initiated by (deployment ecs-svc/1)",
        ),
        set(),
    ),
    (
        "essential-container-exited",
        variant(
            TN,
            detail__stopCode="EssentialContainerExited",
            detail__stoppedReason="Essential container in task exited",
        ),
        set(),
    ),
    (
        "reason-not-at-start",
        variant(
            TN,
            drop=("stopCode",),
            detail__stoppedReason="Task stopped: Your Spot Task was interrupted.",
        ),
        set(),
    ),
    (
        "reason-other-case",
        variant(TN, drop=("stopCode",), detail__stoppedReason="your spot task was interrupted."),
        set(),
    ),
    (
        "stopCode-lowercase",
        variant(TN, drop=("stoppedReason",), detail__stopCode="terminationnotice"),
        set(),
    ),
    (
        "blog-fargate-source",
        variant(TN, source="aws.fargate", detail_type="Fargate Task State Change"),
        set(),
    ),
    ("deployment-state-change", variant(TN, detail_type="ECS Deployment State Change"), set()),
    ("placement-other-reason", variant(PF, detail__reason="RESOURCE:MEMORY"), set()),
    ("placement-no-reason", variant(PF, drop=("reason",)), set()),
    (
        "service-action-other-name",
        variant(STEADY, detail__eventName="SERVICE_DISCOVERY_INSTANCE_UNHEALTHY"),
        set(),
    ),
    ("other-source-same-shape", variant(PF, source="custom.ecs"), set()),
]

PATTERNS: dict[str, Callable[[str | None], dict[str, Any]]] = {
    "interruption": interruption_pattern,
    "placement": placement_failure_pattern,
    "steady": steady_state_pattern,
}


def _put_events(
    url: str, rules: dict[str, dict[str, Any]], events: dict[str, dict[str, Any]]
) -> dict[str, set[str]]:
    """Make one rule + queue per pattern, send every event, return rule → case names."""
    events_client, sqs = boto_client("events", url), boto_client("sqs", url)
    queues: dict[str, str] = {}
    for name, pattern in rules.items():
        queue_url = sqs.create_queue(QueueName=f"rule-{name}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events_client.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        events_client.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
        queues[name] = queue_url
    for case, event in events.items():
        detail = {**event["detail"], "testCase": case}
        out = events_client.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(detail),
                    "Resources": event.get("resources", []),
                }
            ]
        )
        assert out["FailedEntryCount"] == 0, out
    got: dict[str, set[str]] = {}
    for name, queue_url in queues.items():
        got[name] = set()
        while True:
            msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not msgs:
                break
            for m in msgs:
                got[name].add(json.loads(m["Body"])["detail"]["testCase"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return got


@pytest.fixture(name="fresh")
def fresh_fixture(aws_env: str) -> str:
    reset_moto(aws_env)
    return aws_env


def test_moto_does_not_implement_test_event_pattern(fresh: str) -> None:
    """Pins moto's limit: if a moto upgrade implements it, use it here instead."""
    client = boto_client("events", fresh)
    out = client.test_event_pattern(
        EventPattern=json.dumps(interruption_pattern()), Event=json.dumps(TN)
    )
    assert "Result" not in out


def test_patterns_agree_with_moto_and_expectations(fresh: str) -> None:
    rules = {name: make(None) for name, make in PATTERNS.items()}
    got = _put_events(fresh, rules, {case: event for case, event, _ in CASES})

    for case, event, expected in CASES:
        by_moto = {name for name, cases in got.items() if case in cases}
        by_matcher = {name for name, pattern in rules.items() if matches(pattern, event)}
        assert by_moto == expected, f"{case}: moto matched {by_moto}, expected {expected}"
        assert by_matcher == expected, f"{case}: matcher matched {by_matcher}, expected {expected}"


def test_cluster_scoped_patterns_match_only_their_cluster(fresh: str) -> None:
    cluster = TN["detail"]["clusterArn"]
    rules = {
        "interruption": interruption_pattern(cluster),
        "placement": placement_failure_pattern(cluster),
    }
    elsewhere = variant(
        TN, detail__clusterArn=cluster.replace("cluster/default", "cluster/staging")
    )
    events = {
        "tn": TN,
        "pf": PF,
        "elsewhere": elsewhere,
        "pf-elsewhere": variant(PF, detail__clusterArn=elsewhere["detail"]["clusterArn"]),
    }

    got = _put_events(fresh, rules, events)

    assert got == {"interruption": {"tn"}, "placement": {"pf"}}
    assert [c for c, e in events.items() if matches(rules["interruption"], e)] == ["tn"]


def test_published_patterns_miss_events_ours_catch(fresh: str) -> None:
    """The AWS article's placement pattern matches nothing it should (wrong detail-type);
    its termination-notice pattern misses SpotInterruption and events without stopCode."""
    published_tn = load_event("pattern-termination-notice")
    published_pf = load_event("pattern-placement-failure")
    published_tn["detail"]["clusterArn"] = [TN["detail"]["clusterArn"]]
    published_pf["detail"]["clusterArn"] = [PF["detail"]["clusterArn"]]
    si_same_cluster = variant(SI, detail__clusterArn=TN["detail"]["clusterArn"])
    no_code = variant(TN, drop=("stopCode",))
    events = {"tn": TN, "si": si_same_cluster, "no-code": no_code, "pf": PF}

    got = _put_events(fresh, {"published-tn": published_tn, "published-pf": published_pf}, events)

    assert got == {"published-tn": {"tn"}, "published-pf": set()}
    assert not matches(published_pf, PF)
    ours = interruption_pattern(TN["detail"]["clusterArn"])
    assert all(matches(ours, e) for e in (TN, si_same_cluster, no_code))


@pytest.mark.parametrize(
    ("event", "kind", "service"),
    [
        (TN, EventKind.INTERRUPTION, None),
        (SI, EventKind.INTERRUPTION, "my-service"),
        (PF, EventKind.PLACEMENT_FAILURE, "servicetest"),
        (STEADY, EventKind.STEADY_STATE, "servicetest"),
    ],
)
def test_classify_reads_the_fields_the_actions_need(
    event: dict[str, Any], kind: EventKind, service: str | None
) -> None:
    ev = classify(event)
    assert (ev.kind, ev.cluster, ev.service) == (kind, "default", service)
    if kind is EventKind.INTERRUPTION:
        assert ev.task_arn == (event["detail"].get("taskArn") or event["resources"][0])
        assert ev.time is not None


def test_matcher_refuses_syntax_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="only 'prefix'"):
        matches({"detail": {"stopCode": [{"anything-but": ["x"]}]}}, TN)
    with pytest.raises(ValueError, match="objects or lists"):
        matches({"source": "aws.ecs"}, TN)
