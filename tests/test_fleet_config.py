"""Configuration, retry policy and error classification, the public surface of
spotgrace.fleet, and the CLI's ``match``/``handle`` against moto."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import spotgrace
import spotgrace.fleet
from spotgrace.fleet import (
    Action,
    AwsPermanentError,
    AwsRetriesExhausted,
    FleetConfig,
    RetryPolicy,
    ServiceRef,
)
from spotgrace.fleet._retry import call_aws, is_retryable

from ._fleet import (  # noqa: F401 - fixtures
    EVENTS_DIR,
    World,
    aws_env_fixture,
    moto_url_fixture,
    world_fixture,
)

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


def _error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


def test_config_from_env_reads_every_variable() -> None:
    config = FleetConfig.from_env(
        {
            "SPOTGRACE_FLEET_SERVICES": "prod/web, prod/api",
            "SPOTGRACE_FLEET_ACTION": "Scale-Out",
            "SPOTGRACE_FLEET_ACTIONS": "prod/api=redeploy",
            "SPOTGRACE_FLEET_FALLBACK": "prod/web=web-od",
            "SPOTGRACE_FLEET_SCALE_OUT_BY": "2",
            "SPOTGRACE_FLEET_MAX_DESIRED": "10",
            "SPOTGRACE_FLEET_HOLD_OFF": "300",
            "SPOTGRACE_FLEET_MAX_ATTEMPTS": "7",
        }
    )
    web, api = ServiceRef("prod", "web"), ServiceRef("prod", "api")
    assert config.services == {web, api}
    assert config.policy_for(web, {}).action is Action.SCALE_OUT
    assert config.policy_for(api, {}).action is Action.REDEPLOY
    assert config.policy_for(web, {}).fallback_twin == "web-od"
    assert (config.scale_out_by, config.max_desired_count, config.hold_off) == (2, 10, 300.0)
    assert config.retry.max_attempts == 7


def test_service_tags_win_over_the_variables() -> None:
    config = FleetConfig.from_env(
        {"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_FALLBACK": "prod/web=od"}
    )
    web = ServiceRef("prod", "web")
    policy = config.policy_for(
        web, {"spotgrace:fleet-action": "redeploy", "spotgrace:fleet-fallback": "off"}
    )
    assert (policy.action, policy.fallback_twin) == (Action.REDEPLOY, None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "name at least one"),
        ({"SPOTGRACE_FLEET_SERVICES": "web"}, "expected cluster/service"),
        (
            {"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_ACTION": "scaleout"},
            "unknown action",
        ),
        (
            {"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_ACTIONS": "prod/api=alert"},
            "not in",
        ),
        (
            {"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_FALLBACK": "prod/web"},
            "expected cluster/service=value",
        ),
        ({"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_HOLD_OFF": "nan"}, "finite"),
        ({"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_SCALE_OUT_BY": "0"}, ">= 1"),
        ({"SPOTGRACE_FLEET_SERVICES": "prod/web", "SPOTGRACE_FLEET_MAX_ATTEMPTS": "x"}, "integer"),
    ],
)
def test_bad_configuration_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(spotgrace.ConfigError, match=message):
        FleetConfig.from_env(env)


def test_a_bad_tag_is_a_config_error() -> None:
    config = FleetConfig.from_env({"SPOTGRACE_FLEET_SERVICES": "prod/web"})
    with pytest.raises(spotgrace.ConfigError, match="tag spotgrace:fleet-action"):
        config.policy_for(ServiceRef("prod", "web"), {"spotgrace:fleet-action": "restart"})


def test_full_jitter_delays_stay_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, rng=random.Random(7))
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not a fixed backoff
        assert min(delays) < ceiling * 0.2


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (_error("ThrottlingException"), True),
        (_error("TooManyRequestsException", 429), True),
        (_error("ProvisionedThroughputExceededException"), True),
        (_error("ServerException", 500), True),
        (_error("SomethingNew", 503), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (_error("AccessDeniedException"), False),
        (_error("InvalidParameterException"), False),
        (_error("ClusterNotFoundException"), False),
        (ValueError("x"), False),
    ],
)
def test_error_classification(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


def test_call_aws_retries_then_gives_up_and_fails_at_once_on_permanent_errors() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=3, sleep=sleeps.append)
    calls: list[str] = []

    def throttled() -> None:
        calls.append("t")
        raise _error("ThrottlingException")

    with pytest.raises(AwsRetriesExhausted, match="after 3 attempts"):
        call_aws(policy, "UpdateService", throttled)
    assert (len(calls), len(sleeps)) == (3, 2)

    def denied() -> None:
        calls.append("d")
        raise _error("AccessDeniedException")

    with pytest.raises(AwsPermanentError, match="AccessDeniedException"):
        call_aws(policy, "UpdateService", denied)
    assert calls.count("d") == 1


def test_public_all_is_sorted_complete_and_documented() -> None:
    names = spotgrace.fleet.__all__
    assert names == sorted(names)
    public = {
        n
        for n, v in vars(spotgrace.fleet).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(names)
    for name in names:
        assert getattr(spotgrace.fleet, name).__doc__, name


def test_import_spotgrace_and_the_cli_module_do_not_import_boto3() -> None:
    code = "import sys, spotgrace, spotgrace._cli._fleet; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spotgrace", "fleet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_match_says_what_an_event_is() -> None:
    """Exit 0 for a fleet event, 3 for anything else (the blog's aws.fargate source)."""
    out = _cli("match", str(EVENTS_DIR / "service-action-placement-failure.json"))
    assert out.returncode == 0
    assert json.loads(out.stdout) | {
        "kind": "placement-failure",
        "service": "servicetest",
    } == json.loads(out.stdout)
    blog = json.loads((EVENTS_DIR / "task-state-change-termination-notice.json").read_text())
    blog |= {"source": "aws.fargate", "detail-type": "Fargate Task State Change"}
    miss = _cli("match", "-", stdin=json.dumps(blog))
    assert (miss.returncode, json.loads(miss.stdout)["kind"]) == (3, "other")


def test_cli_handle_dry_run_against_moto_writes_nothing(world: World, tmp_path: Path) -> None:
    web = world.service("web", 2)
    task = world.task("web")
    event_file = tmp_path / "event.json"
    world.now = time.time()  # the CLI uses the real clock: a fresh event
    event_file.write_text(json.dumps(world.interruption(task, group="service:web")))
    env = dict(os.environ) | {
        "SPOTGRACE_FLEET_SERVICES": "prod/web",
        "SPOTGRACE_FLEET_ACTION": "scale-out",
        "SPOTGRACE_FLEET_TOPIC_ARN": world.topic_arn,
    }

    out = _cli(
        "handle",
        str(event_file),
        "--dry-run",
        "--endpoint-url",
        world.url,
        "--region",
        "us-east-1",
        env=env,
    )

    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["results"][0]["result"] == "scaled-out"
    assert {"call": "UpdateService", "service": "prod/web", "desired": 3} in result["planned"]
    assert world.desired(web) == 2
    assert world.alerts() == []
    assert '"dry_run": true' in out.stderr  # the JSON log lines go to stderr


def test_cli_handle_reports_a_config_error(tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text((EVENTS_DIR / "task-state-change-spot-interruption.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    out = _cli("handle", str(event_file), "--dry-run", env=env)
    assert out.returncode == 1
    assert "ConfigError" in out.stderr
