"""The infrastructure, generated: a CloudFormation template for one cluster and its
services, and a call of the Terraform module in ``infra/fleet/terraform``.

Both deploy the same parts: the EventBridge rules (interruption, placement
failure, steady state, a 5-minute tick for hold-offs) with the patterns of
``_events.py``; the function; a least-privilege role (DescribeServices,
UpdateService and ListTagsForResource on the named services and twins only;
DescribeTasks on the cluster's tasks; Publish to the topic; SendMessage to
the DLQ; item reads and writes on the state table; its own log stream);
a log group with retention; the SNS topic; the DLQ; the DynamoDB table.
The rendered template contains no account id or region: ``Fn::Sub`` fills
them at deploy time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from spotgrace import ConfigError

from ._config import Action
from ._events import interruption_pattern, placement_failure_pattern, steady_state_pattern

__all__ = ["cloudformation_template", "render", "terraform_module_call"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_PREFIX = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"


def _check(cluster: str, services: Sequence[str], twins: Mapping[str, str]) -> None:
    if not services:
        raise ConfigError("name at least one service")
    for name in (cluster, *services, *twins, *twins.values()):
        if not _NAME.match(name):
            raise ConfigError(f"not an ECS cluster/service name: {name!r}")
    for spot, twin in twins.items():
        if spot not in services:
            raise ConfigError(f"fallback for {spot!r}, which is not among the services")
        if twin == spot:  # the function would refuse this at every event
            raise ConfigError(f"fallback twin of {spot!r} must be another service, got {twin!r}")


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _rule(
    pattern: dict[str, Any] | None, description: str, schedule: str | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Description": description,
        "State": "ENABLED",
        "Targets": [
            {
                "Id": "fleet-function",
                "Arn": {"Fn::GetAtt": ["Function", "Arn"]},
                "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
                "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600},
            }
        ],
    }
    if pattern is not None:
        props["EventPattern"] = pattern
    if schedule is not None:
        props["ScheduleExpression"] = schedule
    return {"Type": "AWS::Events::Rule", "Properties": props}


def _permission(rule: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "Function"},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule, "Arn"]},
        },
    }


def cloudformation_template(
    *,
    cluster: str,
    services: Sequence[str],
    twins: Mapping[str, str] | None = None,
    action: Action = Action.ALERT,
) -> dict[str, Any]:
    """The CloudFormation template (a dict; dump it as JSON) for ``cluster``/``services``.

    ``twins`` maps a Spot service to its on-demand twin for the fallback.
    """
    twins = dict(twins or {})
    _check(cluster, services, twins)
    cluster_arn = _sub(f"{_PREFIX}:cluster/{cluster}")
    service_arns = [_sub(f"{_PREFIX}:service/{cluster}/{s}") for s in (*services, *twins.values())]
    env = {
        "SPOTGRACE_FLEET_SERVICES": ",".join(f"{cluster}/{s}" for s in services),
        "SPOTGRACE_FLEET_ACTION": {"Ref": "Action"},
        "SPOTGRACE_FLEET_FALLBACK": ",".join(f"{cluster}/{s}={t}" for s, t in twins.items()),
        "SPOTGRACE_FLEET_HOLD_OFF": {"Ref": "HoldOffSeconds"},
        "SPOTGRACE_FLEET_TOPIC_ARN": {"Ref": "AlertTopic"},
        "SPOTGRACE_FLEET_TABLE": {"Ref": "StateTable"},
        "SPOTGRACE_FLEET_DLQ_URL": {"Ref": "DeadLetterQueue"},
        "SPOTGRACE_FLEET_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
    }
    policy = [
        {
            "Sid": "ReadAndScaleTheNamedServices",
            "Effect": "Allow",
            "Action": ["ecs:DescribeServices", "ecs:UpdateService", "ecs:ListTagsForResource"],
            "Resource": service_arns,
        },
        {
            "Sid": "ReadTheClustersTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": _sub(f"{_PREFIX}:task/{cluster}/*"),
        },
        {
            "Sid": "Alert",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": {"Ref": "AlertTopic"},
        },
        {
            "Sid": "DeadLetter",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        },
        {
            "Sid": "State",
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
            "Resource": {"Fn::GetAtt": ["StateTable", "Arn"]},
        },
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::Sub": "${LogGroup.Arn}"},
        },
    ]
    resources: dict[str, Any] = {
        "AlertTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"KmsMasterKeyId": "alias/aws/sns"},
        },
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
        },
        "DeadLetterQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "DeadLetterQueue"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "RulesDeliverUndeliverableEvents",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                            "Condition": {
                                "ArnEquals": {
                                    "aws:SourceArn": [
                                        {"Fn::GetAtt": [r, "Arn"]}
                                        for r in (
                                            "InterruptionRule",
                                            "PlacementFailureRule",
                                            "SteadyStateRule",
                                            "TickRule",
                                        )
                                    ]
                                }
                            },
                        }
                    ],
                },
            },
        },
        "StateTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"RetentionInDays": {"Ref": "LogRetentionDays"}},
        },
        "FunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "spotgrace-fleet",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": policy},
                    }
                ],
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Description": f"spotgrace fleet companion for {cluster}",
                "Runtime": "python3.12",
                "Handler": "spotgrace.fleet.handler",
                "Code": {"S3Bucket": {"Ref": "CodeS3Bucket"}, "S3Key": {"Ref": "CodeS3Key"}},
                "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
                "Timeout": 60,
                "MemorySize": 256,
                "Environment": {"Variables": env},
                "DeadLetterConfig": {"TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
                "LoggingConfig": {"LogGroup": {"Ref": "LogGroup"}, "LogFormat": "Text"},
            },
        },
        "FunctionInvokeConfig": {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": {"Ref": "Function"},
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": 0,
                "MaximumEventAgeInSeconds": 3600,
            },
        },
        "InterruptionRule": _rule(
            interruption_pattern(cluster_arn), "Fargate Spot interruption notices"
        ),
        "PlacementFailureRule": _rule(
            placement_failure_pattern(cluster_arn), "No Fargate Spot capacity"
        ),
        "SteadyStateRule": _rule(
            steady_state_pattern(cluster_arn), "Services back to steady state"
        ),
        "TickRule": _rule(None, "Hold-off timer for restores and fail-backs", "rate(5 minutes)"),
    }
    for rule in ("InterruptionRule", "PlacementFailureRule", "SteadyStateRule", "TickRule"):
        resources[f"{rule}Permission"] = _permission(rule)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"spotgrace fleet companion: Spot interruptions and capacity for {cluster}",
        "Parameters": {
            "CodeS3Bucket": {"Type": "String", "Description": "bucket of the function's zip"},
            "CodeS3Key": {"Type": "String", "Description": "key of the zip (see docs/fleet.md)"},
            "Action": {
                "Type": "String",
                "Default": action.value,
                "AllowedValues": [a.value for a in Action],
                "Description": "what to do on an interruption (service tags override)",
            },
            "HoldOffSeconds": {"Type": "Number", "Default": 900, "MinValue": 0},
            "LogRetentionDays": {
                "Type": "Number",
                "Default": 30,
                "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365],
            },
        },
        "Resources": resources,
        "Outputs": {
            "AlertTopicArn": {"Value": {"Ref": "AlertTopic"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "FunctionName": {"Value": {"Ref": "Function"}},
            "StateTableName": {"Value": {"Ref": "StateTable"}},
        },
    }


def terraform_module_call(
    *,
    cluster: str,
    services: Sequence[str],
    twins: Mapping[str, str] | None = None,
    action: Action = Action.ALERT,
    source: str = "./infra/fleet/terraform",
) -> str:
    """A Terraform ``module`` block that deploys the module for ``cluster``/``services``."""
    twins = dict(twins or {})
    _check(cluster, services, twins)
    lines = [
        'module "spotgrace_fleet" {',
        f"  source         = {json.dumps(source)}",
        f"  cluster_name   = {json.dumps(cluster)}",
        f"  service_names  = {json.dumps(list(services))}",
        f"  action         = {json.dumps(action.value)}",
        "  fallback_twins = {",
        *(f"    {json.dumps(k)} = {json.dumps(v)}" for k, v in twins.items()),
        "  }",
        '  code_zip       = "build/spotgrace-fleet.zip"',
        "}",
    ]
    return "\n".join(lines) + "\n"


def render(fmt: str, **kwargs: Any) -> str:
    """``cfn`` → the template as JSON; ``terraform`` → the module call."""
    if fmt == "cfn":
        return json.dumps(cloudformation_template(**kwargs), indent=2) + "\n"
    if fmt == "terraform":
        return terraform_module_call(**kwargs)
    raise ValueError(f"unknown format {fmt!r} (cfn or terraform)")
