"""The companion's configuration: read from ``SPOTGRACE_FLEET_*`` variables in one
place (:meth:`FleetConfig.from_env`), refined per service by ECS service tags.

Variables (all optional except ``SPOTGRACE_FLEET_SERVICES``):

=================================  ==================================================
``SPOTGRACE_FLEET_SERVICES``       managed services, ``cluster/service`` comma-separated
``SPOTGRACE_FLEET_ACTION``         default interruption action: alert|scale-out|redeploy
``SPOTGRACE_FLEET_ACTIONS``        per service: ``cluster/svc=scale-out,...``
``SPOTGRACE_FLEET_SCALE_OUT_BY``   extra tasks per interrupted task (default 1)
``SPOTGRACE_FLEET_MAX_DESIRED``    never raise ``desiredCount`` above this
``SPOTGRACE_FLEET_FALLBACK``       on-demand twins: ``cluster/svc=twin-service,...``
``SPOTGRACE_FLEET_HOLD_OFF``       seconds steady before failing back (default 900)
``SPOTGRACE_FLEET_RESTORE_AFTER``  seconds steady before undoing a scale-out (default 60)
``SPOTGRACE_FLEET_MAX_EVENT_AGE``  older interruption events only alert (default 900)
``SPOTGRACE_FLEET_TOPIC_ARN``      SNS topic for alerts
``SPOTGRACE_FLEET_TABLE``          DynamoDB table for de-duplication and restore state
``SPOTGRACE_FLEET_DLQ_URL``        SQS queue for events that still fail
``SPOTGRACE_FLEET_ACCOUNT_ID``     act only on this account's clusters (the templates set it)
``SPOTGRACE_FLEET_MAX_ATTEMPTS``   calls per AWS operation incl. retries (default 5)
``SPOTGRACE_FLEET_BASE_DELAY``     first backoff ceiling in seconds (default 0.2)
``SPOTGRACE_FLEET_MAX_DELAY``      backoff ceiling in seconds (default 5)
=================================  ==================================================

Service tags (they win over the variables): ``spotgrace:fleet-action`` and
``spotgrace:fleet-fallback`` (the twin's service name, or ``off``).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from spotgrace import ConfigError

from ._retry import RetryPolicy

__all__ = [
    "ACTION_TAG",
    "FALLBACK_TAG",
    "NAME_RE",
    "Action",
    "FleetConfig",
    "ServicePolicy",
    "ServiceRef",
]

ACTION_TAG = "spotgrace:fleet-action"
FALLBACK_TAG = "spotgrace:fleet-fallback"
_PREFIX = "SPOTGRACE_FLEET_"
#: What ECS accepts as a cluster or service name.
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")


class Action(enum.Enum):
    """What to do when a task of a service gets a Spot interruption notice."""

    ALERT = "alert"
    SCALE_OUT = "scale-out"
    REDEPLOY = "redeploy"

    @classmethod
    def parse(cls, raw: str, where: str) -> Action:
        """The action named ``raw``; a ConfigError naming ``where`` otherwise."""
        try:
            return cls(raw.strip().lower())
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise ConfigError(f"{where}: unknown action {raw!r} (one of: {names})") from None


@dataclass(frozen=True, order=True)
class ServiceRef:
    """One ECS service: its cluster's and its own short names."""

    cluster: str
    service: str

    def __post_init__(self) -> None:
        for part in (self.cluster, self.service):
            if not isinstance(part, str) or not NAME_RE.fullmatch(part):
                raise ConfigError(
                    f"bad cluster/service name {part!r} in {self} (letters, digits, - and _)"
                )

    def __str__(self) -> str:
        return f"{self.cluster}/{self.service}"

    @classmethod
    def parse(cls, raw: str, where: str = "service") -> ServiceRef:
        """``cluster/service`` → ServiceRef."""
        cluster, sep, service = raw.strip().partition("/")
        if not sep:
            raise ConfigError(f"{where}: expected cluster/service, got {raw!r}")
        return cls(cluster, service)


@dataclass(frozen=True)
class ServicePolicy:
    """What the companion does for one service (config and tags resolved)."""

    action: Action
    fallback_twin: str | None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(_PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{_PREFIX}{name} must be a number, got {raw!r}") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ConfigError(f"{_PREFIX}{name} must be a finite number >= 0, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int | None, low: int) -> int | None:
    raw = env.get(_PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{_PREFIX}{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{_PREFIX}{name} must be >= {low}, got {raw!r}")
    return value


def _pairs(env: Mapping[str, str], name: str) -> dict[ServiceRef, str]:
    out: dict[ServiceRef, str] = {}
    for item in env.get(_PREFIX + name, "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ConfigError(f"{_PREFIX}{name}: expected cluster/service=value, got {item!r}")
        out[ServiceRef.parse(key, _PREFIX + name)] = value.strip()
    return out


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(_PREFIX + name, "").strip()
    return value or None


@dataclass(frozen=True)
class FleetConfig:
    """The companion's settings; see the module docstring for the variables."""

    services: frozenset[ServiceRef]
    default_action: Action = Action.ALERT
    actions: Mapping[ServiceRef, Action] = field(default_factory=dict)
    fallback_twins: Mapping[ServiceRef, str] = field(default_factory=dict)
    scale_out_by: int = 1
    max_desired_count: int | None = None
    hold_off: float = 900.0
    restore_after: float = 60.0
    max_event_age: float = 900.0
    topic_arn: str | None = None
    table_name: str | None = None
    dlq_url: str | None = None
    account_id: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.services:
            raise ConfigError(f"{_PREFIX}SERVICES: name at least one cluster/service")
        if self.scale_out_by < 1:
            raise ConfigError(f"scale_out_by must be >= 1, got {self.scale_out_by}")
        for ref in (*self.actions, *self.fallback_twins):
            if ref not in self.services:
                raise ConfigError(f"{ref} is configured but not in {_PREFIX}SERVICES")
        if self.account_id is not None and not re.fullmatch(r"[0-9]{12}", self.account_id):
            raise ConfigError(f"{_PREFIX}ACCOUNT_ID must be 12 digits, got {self.account_id!r}")
        for name in ("hold_off", "restore_after", "max_event_age"):
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FleetConfig:
        """Read and validate every ``SPOTGRACE_FLEET_*`` variable (a ConfigError if bad)."""
        raw_services = env.get(_PREFIX + "SERVICES", "")
        services = frozenset(
            ServiceRef.parse(s, _PREFIX + "SERVICES") for s in raw_services.split(",") if s.strip()
        )
        default_raw = env.get(_PREFIX + "ACTION", "").strip()
        default = Action.parse(default_raw, _PREFIX + "ACTION") if default_raw else Action.ALERT
        actions = {
            ref: Action.parse(v, f"{_PREFIX}ACTIONS[{ref}]")
            for ref, v in _pairs(env, "ACTIONS").items()
        }
        retry = RetryPolicy(
            max_attempts=_int(env, "MAX_ATTEMPTS", 5, 1) or 5,
            base_delay=_seconds(env, "BASE_DELAY", 0.2),
            max_delay=_seconds(env, "MAX_DELAY", 5.0),
        )
        return cls(
            services=services,
            default_action=default,
            actions=actions,
            fallback_twins=_pairs(env, "FALLBACK"),
            scale_out_by=_int(env, "SCALE_OUT_BY", 1, 1) or 1,
            max_desired_count=_int(env, "MAX_DESIRED", None, 1),
            hold_off=_seconds(env, "HOLD_OFF", 900.0),
            restore_after=_seconds(env, "RESTORE_AFTER", 60.0),
            max_event_age=_seconds(env, "MAX_EVENT_AGE", 900.0),
            topic_arn=_optional(env, "TOPIC_ARN"),
            table_name=_optional(env, "TABLE"),
            dlq_url=_optional(env, "DLQ_URL"),
            account_id=_optional(env, "ACCOUNT_ID"),
            retry=retry,
        )

    def policy_for(self, ref: ServiceRef, tags: Mapping[str, str]) -> ServicePolicy:
        """The service's policy: its tags win over the variables."""
        action = self.actions.get(ref, self.default_action)
        if ACTION_TAG in tags:
            action = Action.parse(tags[ACTION_TAG], f"tag {ACTION_TAG} on {ref}")
        twin = self.fallback_twins.get(ref)
        if FALLBACK_TAG in tags:
            value = tags[FALLBACK_TAG].strip()
            twin = None if value.lower() in ("", "off", "none") else value
        if twin is not None and (twin == ref.service or not NAME_RE.fullmatch(twin)):
            raise ConfigError(f"{ref}: fallback twin must be another service's name, got {twin!r}")
        return ServicePolicy(action=action, fallback_twin=twin)
