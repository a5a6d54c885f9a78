"""EventBridge event patterns, a matcher for the subset of pattern syntax they use,
and the classification of incoming events.

The patterns (functions, so a cluster can be filled in):

- :func:`interruption_pattern`: ``aws.ecs`` / ``ECS Task State Change`` with
  ``stopCode`` ``TerminationNotice`` or ``SpotInterruption``, **or** a
  ``stoppedReason`` starting "Your Spot Task was interrupted" (some events come
  without ``stopCode``).
- :func:`placement_failure_pattern`: ``ECS Service Action`` /
  ``SERVICE_TASK_PLACEMENT_FAILURE`` with reason ``RESOURCE:FARGATE``. (The AWS
  article's pattern says ``ECS Deployment State Change``, which never carries
  that event; it would match nothing.)
- :func:`steady_state_pattern`: ``ECS Service Action`` / ``SERVICE_STEADY_STATE``,
  the cue to undo a scale-out or fail back.

:func:`matches` implements the EventBridge syntax these use: objects nest,
a list is "any of", scalars compare exactly, ``{"prefix": str}`` and the
``$or`` key (a list of alternative sub-patterns at the same level). A field
missing from the event matches nothing. Anything else raises ValueError
rather than guessing. moto's EventBridge does not implement
``TestEventPattern``; the tests check this matcher against moto's rule
matching (PutEvents into rules with SQS targets) on the same events.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "SPOT_STOPPED_REASON_PREFIX",
    "SPOT_STOP_CODES",
    "EventKind",
    "FleetEvent",
    "classify",
    "interruption_pattern",
    "matches",
    "placement_failure_pattern",
    "steady_state_pattern",
]

SPOT_STOP_CODES = ("TerminationNotice", "SpotInterruption")
SPOT_STOPPED_REASON_PREFIX = "Your Spot Task was interrupted"
_SOURCE = "aws.ecs"


ClusterArn = str | Mapping[str, Any] | None
"""A cluster ARN, or a CloudFormation intrinsic (``{"Fn::Sub": ...}``) that makes one."""


def _with_cluster(pattern: dict[str, Any], cluster_arn: ClusterArn) -> dict[str, Any]:
    if cluster_arn is not None:
        pattern["detail"]["clusterArn"] = [cluster_arn]
    return pattern


def interruption_pattern(cluster_arn: ClusterArn = None) -> dict[str, Any]:
    """The rule pattern for Spot interruption notices (of one cluster, if given)."""
    return _with_cluster(
        {
            "source": [_SOURCE],
            "detail-type": ["ECS Task State Change"],
            "detail": {
                "$or": [
                    {"stopCode": list(SPOT_STOP_CODES)},
                    {"stoppedReason": [{"prefix": SPOT_STOPPED_REASON_PREFIX}]},
                ]
            },
        },
        cluster_arn,
    )


def placement_failure_pattern(cluster_arn: ClusterArn = None) -> dict[str, Any]:
    """The rule pattern for "no Fargate (Spot) capacity" placement failures."""
    return _with_cluster(
        {
            "source": [_SOURCE],
            "detail-type": ["ECS Service Action"],
            "detail": {
                "eventName": ["SERVICE_TASK_PLACEMENT_FAILURE"],
                "reason": ["RESOURCE:FARGATE"],
            },
        },
        cluster_arn,
    )


def steady_state_pattern(cluster_arn: ClusterArn = None) -> dict[str, Any]:
    """The rule pattern for services reaching steady state."""
    return _with_cluster(
        {
            "source": [_SOURCE],
            "detail-type": ["ECS Service Action"],
            "detail": {"eventName": ["SERVICE_STEADY_STATE"]},
        },
        cluster_arn,
    )


_MISSING = object()


def _value_matches(value: Any, rule: Any) -> bool:
    if isinstance(rule, dict):
        if set(rule) != {"prefix"} or not isinstance(rule["prefix"], str):
            raise ValueError(f"unsupported pattern operator {rule!r} (only 'prefix')")
        return isinstance(value, str) and value.startswith(rule["prefix"])
    if isinstance(rule, str | int | float | bool) or rule is None:
        return value == rule and type(value) is type(rule)
    raise ValueError(f"unsupported pattern value {rule!r}")


def _field_matches(value: Any, rules: list[Any]) -> bool:
    if value is _MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    return any(_value_matches(v, r) for v in values for r in rules)


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches ``pattern`` (the subset in the module docstring)."""
    for key, rule in pattern.items():
        if key == "$or":
            if not isinstance(rule, list) or not rule:
                raise ValueError("$or needs a non-empty list of patterns")
            if not any(matches(alt, event) for alt in rule):
                return False
            continue
        value = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(rule, Mapping):
            if not isinstance(value, Mapping) or not matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not rule:
                raise ValueError(f"empty list for {key!r}")
            if not _field_matches(value, rule):
                return False
        else:
            raise ValueError(f"pattern values must be objects or lists, got {key}={rule!r}")
    return True


class EventKind(enum.Enum):
    """What an incoming event means to the companion."""

    INTERRUPTION = "interruption"
    PLACEMENT_FAILURE = "placement-failure"
    STEADY_STATE = "steady-state"
    TICK = "tick"
    OTHER = "other"


@dataclass(frozen=True)
class FleetEvent:
    """An EventBridge event, classified, with the fields the actions need.

    ``cluster`` and ``service`` are short names (``service`` is None for a task
    event without ``group``; the handler then asks ECS). ``time`` is the
    event's epoch seconds (None when absent or unreadable).
    """

    kind: EventKind
    event_id: str
    cluster: str | None
    service: str | None
    task_arn: str | None
    time: float | None
    raw: Mapping[str, Any]


def _short(arn: Any, marker: str) -> str | None:
    """The last ``/``-part of an ECS ARN of the given resource type."""
    if not isinstance(arn, str) or f":{marker}/" not in arn:
        return None
    return arn.rsplit("/", 1)[-1] or None


def _parse_time(raw: Any) -> float | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def classify(event: Mapping[str, Any]) -> FleetEvent:
    """Classify ``event`` by the same patterns the rules use (kind OTHER if none)."""
    detail = event.get("detail")
    detail = detail if isinstance(detail, Mapping) else {}
    event_id = str(event.get("id", ""))
    when = _parse_time(event.get("time"))
    cluster = _short(detail.get("clusterArn"), "cluster")
    resources = event.get("resources")
    first = resources[0] if isinstance(resources, list) and resources else None
    if matches(interruption_pattern(), event):
        candidates = (detail.get("taskArn"), first)  # the first that is an ARN-like string
        task_arn = next((c for c in candidates if isinstance(c, str) and c), None)
        group = detail.get("group")
        service = None
        if isinstance(group, str) and group.startswith("service:"):
            service = group.removeprefix("service:") or None
        return FleetEvent(
            EventKind.INTERRUPTION,
            event_id,
            cluster,
            service,
            task_arn,
            when,
            event,
        )
    for kind, pattern in (
        (EventKind.PLACEMENT_FAILURE, placement_failure_pattern()),
        (EventKind.STEADY_STATE, steady_state_pattern()),
    ):
        if matches(pattern, event):
            return FleetEvent(kind, event_id, cluster, _short(first, "service"), None, when, event)
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return FleetEvent(EventKind.TICK, event_id, None, None, None, when, event)
    return FleetEvent(EventKind.OTHER, event_id, cluster, None, None, when, event)
