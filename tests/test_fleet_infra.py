"""The infrastructure as code: the CloudFormation template passes cfn-lint, the
Terraform module parses (python-hcl2; ``terraform validate`` needs the provider
from the registry, which tests may not reach), both carry exactly the
patterns of ``spotgrace.fleet`` and a least-privilege policy, and the CLI
prints them filled in.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]

from spotgrace._cli import main as fleet_main
from spotgrace.fleet import (
    Action,
    interruption_pattern,
    matches,
    placement_failure_pattern,
    steady_state_pattern,
)
from spotgrace.fleet._infra import cloudformation_template

from ._fleet import load_event

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "infra" / "fleet" / "terraform"
EXAMPLE: dict[str, Any] = {
    "cluster": "my-cluster",
    "services": ["my-service"],
    "twins": {"my-service": "my-service-ondemand"},
}
EXPECTED_ACTIONS = {
    "ecs:DescribeServices",
    "ecs:UpdateService",
    "ecs:ListTagsForResource",
    "ecs:DescribeTasks",
    "sns:Publish",
    "sqs:SendMessage",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}


def _lint(template: dict[str, Any]) -> list[str]:
    matches_ = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
    return [f"{m.rule.id} {m.message}" for m in matches_]


@pytest.mark.parametrize(
    "kwargs",
    [
        EXAMPLE,
        {"cluster": "prod", "services": ["web", "api"], "twins": {}, "action": Action.SCALE_OUT},
    ],
    ids=["example-with-twin", "two-services"],
)
def test_cloudformation_template_passes_cfn_lint(kwargs: dict[str, Any]) -> None:
    assert _lint(cloudformation_template(**kwargs)) == []


def test_cfn_lint_is_live_and_finds_a_broken_template() -> None:
    broken = cloudformation_template(**EXAMPLE)
    broken["Resources"]["Function"]["Properties"]["Runtime"] = "python2.7"
    del broken["Resources"]["StateTable"]["Properties"]["KeySchema"]
    found = " ".join(_lint(broken))
    assert "python2.7" in found
    assert "KeySchema" in found


def test_checked_in_template_is_what_the_cli_prints() -> None:
    checked_in = json.loads((ROOT / "infra" / "fleet" / "cloudformation.json").read_text())
    assert checked_in == cloudformation_template(**EXAMPLE)


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    role = template["Resources"]["FunctionRole"]["Properties"]
    statements: list[dict[str, Any]] = role["Policies"][0]["PolicyDocument"]["Statement"]
    return statements


def test_cloudformation_policy_is_least_privilege() -> None:
    statements = _statements(cloudformation_template(**EXAMPLE))
    actions = {a for s in statements for a in s["Action"]}
    assert actions == EXPECTED_ACTIONS
    for s in statements:
        assert s["Effect"] == "Allow"
        assert s["Resource"] != "*"
        assert all("*" not in a for a in s["Action"])
    ecs_write = next(s for s in statements if "ecs:UpdateService" in s["Action"])
    assert ecs_write["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/my-cluster/my-service"
        },
        {
            "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/my-cluster/my-service-ondemand"
        },
    ]
    tasks = next(s for s in statements if s["Action"] == ["ecs:DescribeTasks"])
    assert tasks["Resource"]["Fn::Sub"].endswith(":task/my-cluster/*")


def test_cloudformation_rules_carry_the_library_patterns_and_match_the_samples() -> None:
    template = cloudformation_template(**EXAMPLE)
    res = template["Resources"]
    sub = {
        "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/my-cluster"
    }
    assert res["InterruptionRule"]["Properties"]["EventPattern"] == interruption_pattern(sub)
    assert res["PlacementFailureRule"]["Properties"]["EventPattern"] == placement_failure_pattern(
        sub
    )
    assert res["SteadyStateRule"]["Properties"]["EventPattern"] == steady_state_pattern(sub)
    assert res["TickRule"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    # With the intrinsic resolved for the samples' account/region/cluster, they match.
    for rule, sample in [
        ("InterruptionRule", "task-state-change-termination-notice"),
        ("InterruptionRule", "task-state-change-spot-interruption"),
        ("PlacementFailureRule", "service-action-placement-failure"),
    ]:
        event = load_event(sample)
        pattern = copy.deepcopy(res[rule]["Properties"]["EventPattern"])
        pattern["detail"]["clusterArn"] = [event["detail"]["clusterArn"]]
        assert matches(pattern, event), (rule, sample)
    for rule in ("InterruptionRule", "PlacementFailureRule", "SteadyStateRule", "TickRule"):
        target = res[rule]["Properties"]["Targets"][0]
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
        assert f"{rule}Permission" in res
    assert res["FunctionInvokeConfig"]["Properties"]["MaximumRetryAttempts"] == 0
    assert res["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def _unquote(node: Any) -> Any:
    """python-hcl2 keeps HCL string quotes: strip them, recursively."""
    if isinstance(node, dict):
        return {_unquote(k): _unquote(v) for k, v in node.items() if k != "__is_block__"}
    if isinstance(node, list):
        return [_unquote(v) for v in node]
    if isinstance(node, str) and len(node) >= 2 and node[0] == node[-1] == '"':
        return node[1:-1]
    return node


def _terraform() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open() as fh:
            for key, value in _unquote(hcl2.load(fh)).items():
                merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


def test_terraform_module_parses_and_has_its_parts() -> None:
    tf = _terraform()
    resources = {(t, n) for block in tf["resource"] for t, named in block.items() for n in named}
    assert resources >= {
        ("aws_cloudwatch_event_rule", "fleet"),
        ("aws_cloudwatch_event_target", "fleet"),
        ("aws_lambda_permission", "events"),
        ("aws_lambda_function", "fleet"),
        ("aws_lambda_function_event_invoke_config", "fleet"),
        ("aws_iam_role_policy", "function"),
        ("aws_cloudwatch_log_group", "function"),
        ("aws_sns_topic", "alerts"),
        ("aws_sqs_queue", "dlq"),
        ("aws_dynamodb_table", "state"),
    }
    variables = {name for block in tf["variable"] for name in block}
    assert variables >= {"cluster_name", "service_names", "fallback_twins", "action", "code_zip"}
    logs = next(
        b["aws_cloudwatch_log_group"]["function"]
        for b in tf["resource"]
        if "aws_cloudwatch_log_group" in b
    )
    assert logs["retention_in_days"] == "${var.log_retention_days}"


def test_terraform_patterns_are_the_library_patterns() -> None:
    local = {k: v for block in _terraform()["locals"] for k, v in block.items()}
    arn = "${local.cluster_arn}"
    assert local["interruption_pattern"] == interruption_pattern(arn)
    assert local["placement_failure_pattern"] == placement_failure_pattern(arn)
    assert local["steady_state_pattern"] == steady_state_pattern(arn)


def test_terraform_policy_grants_the_same_actions_scoped() -> None:
    text = (TF_DIR / "main.tf").read_text()
    policy = text[
        text.index('resource "aws_iam_role_policy"') : text.index('resource "aws_lambda_function"')
    ]
    actions = {
        a
        for group in re.findall(r"Action\s*=\s*\[([^\]]*)\]", policy)
        for a in re.findall(r'"([^"]+)"', group)
    }
    assert actions == EXPECTED_ACTIONS
    resources = re.findall(r"Resource\s*=\s*(.+)", policy)
    assert len(resources) == 6
    assert all('*"' not in r or r.endswith('/*"') or r.endswith(':*"') for r in resources)
    assert not any(r.strip() == '"*"' for r in resources)


def test_cli_prints_the_cloudformation_template(capsys: pytest.CaptureFixture[str]) -> None:
    code = fleet_main(
        [
            "fleet",
            "template",
            "--cluster",
            "prod",
            "--service",
            "web",
            "--fallback",
            "web=web-od",
            "--action",
            "scale-out",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == cloudformation_template(
        cluster="prod", services=["web"], twins={"web": "web-od"}, action=Action.SCALE_OUT
    )


def test_cli_prints_a_terraform_module_call_for_the_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = fleet_main(
        [
            "fleet",
            "template",
            "--cluster",
            "prod",
            "--service",
            "web",
            "--service",
            "api",
            "--format",
            "terraform",
            "--fallback",
            "web=web-od",
        ]
    )
    assert code == 0
    call = _unquote(hcl2.loads(capsys.readouterr().out))["module"][0]["spotgrace_fleet"]
    assert call["cluster_name"] == "prod"
    assert call["service_names"] == ["web", "api"]
    assert call["fallback_twins"] == {"web": "web-od"}
    variables = {name for block in _terraform()["variable"] for name in block}
    assert set(call) - {"source"} <= variables


def test_cli_template_rejects_bad_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert fleet_main(["fleet", "template", "--cluster", "prod", "--service", "we b"]) == 1
    assert "not an ECS cluster/service name" in capsys.readouterr().err
    assert (
        fleet_main(
            ["fleet", "template", "--cluster", "prod", "--service", "web", "--fallback", "api=x"]
        )
        == 1
    )
