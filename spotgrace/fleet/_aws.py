"""The AWS side: boto3 clients without botocore's own retries, and thin ECS/SNS/SQS
wrappers that retry through :func:`call_aws` and, in a dry run, record the
writes they would make instead of making them (reads still happen).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from ._config import ServiceRef
from ._errors import AwsPermanentError
from ._log import JsonLog
from ._retry import RetryPolicy, call_aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["AwsClients", "Ecs", "Messenger", "ServiceView", "make_clients", "retry_logger"]


@dataclass(frozen=True)
class AwsClients:
    """The four clients the companion uses."""

    ecs: ECSClient
    sns: SNSClient
    sqs: SQSClient
    dynamodb: DynamoDBClient


def make_clients(*, region: str | None = None, endpoint_url: str | None = None) -> AwsClients:
    """Clients with botocore's retries off (our loop retries) and short timeouts.

    ``endpoint_url`` (or the ``AWS_ENDPOINT_URL`` variable boto3 reads) points
    them elsewhere, e.g. at moto in tests.
    """
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=3,
        read_timeout=10,
    )
    session = boto3.session.Session(region_name=region)
    kw: dict[str, Any] = {"config": config}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    return AwsClients(
        ecs=session.client("ecs", **kw),
        sns=session.client("sns", **kw),
        sqs=session.client("sqs", **kw),
        dynamodb=session.client("dynamodb", **kw),
    )


RetryHook = Callable[[int, float, str], None]
RetryLogger = Callable[[str], RetryHook]


def retry_logger(log: JsonLog) -> RetryLogger:
    """Per operation, an ``on_retry`` hook for :func:`call_aws` that logs each retry."""

    def for_operation(operation: str) -> RetryHook:
        def told(attempt: int, delay: float, code: str) -> None:
            log.warning("retrying", operation=operation, attempt=attempt, delay=delay, code=code)

        return told

    return for_operation


@dataclass(frozen=True)
class ServiceView:
    """What the companion reads of a service before it writes."""

    ref: ServiceRef
    arn: str
    desired: int
    running: int
    pending: int
    deployments: int
    rollout: str | None
    tags: dict[str, str]

    @property
    def deploying(self) -> bool:
        """A deployment is under way (an old one still draining, or a rollout not done)."""
        return self.deployments > 1 or self.rollout == "IN_PROGRESS"

    @property
    def steady(self) -> bool:
        """One finished deployment and every desired task running."""
        return (
            not self.deploying
            and self.deployments == 1
            and self.pending == 0
            and self.running == self.desired
        )


@dataclass
class Ecs:
    """ECS reads and writes for the companion."""

    client: ECSClient
    retry: RetryPolicy
    log: JsonLog
    dry_run: bool = False
    planned: list[dict[str, Any]] = field(default_factory=list)

    def _call(self, op: str, fn: Any, **kwargs: Any) -> Any:
        return call_aws(self.retry, op, fn, on_retry=retry_logger(self.log)(op), **kwargs)

    def describe(self, ref: ServiceRef) -> ServiceView:
        """Read the service (with its tags); a missing service is an AwsPermanentError."""
        out = self._call(
            "DescribeServices",
            self.client.describe_services,
            cluster=ref.cluster,
            services=[ref.service],
            include=["TAGS"],
        )
        services = [s for s in out.get("services", []) if s.get("status") == "ACTIVE"]
        if not services:
            reason = (out.get("failures") or [{}])[0].get("reason", "not ACTIVE")
            raise AwsPermanentError("DescribeServices", "ServiceNotFound", f"{ref}: {reason}")
        svc = services[0]
        deployments = svc.get("deployments", [])
        primary: dict[str, Any] = next(
            (dict(d) for d in deployments if d.get("status") == "PRIMARY"), {}
        )
        return ServiceView(
            ref=ref,
            arn=svc["serviceArn"],
            desired=int(svc.get("desiredCount", 0)),
            running=int(svc.get("runningCount", 0)),
            pending=int(svc.get("pendingCount", 0)),
            deployments=len(deployments),
            rollout=primary.get("rolloutState"),
            tags={t["key"]: t.get("value", "") for t in svc.get("tags", []) if "key" in t},
        )

    def task_states(self, cluster: str, task_arns: list[str]) -> dict[str, str | None]:
        """``lastStatus`` of each task (None: ECS no longer knows it, i.e. long stopped)."""
        states: dict[str, str | None] = dict.fromkeys(task_arns)
        for start in range(0, len(task_arns), 100):
            out = self._call(
                "DescribeTasks",
                self.client.describe_tasks,
                cluster=cluster,
                tasks=task_arns[start : start + 100],
            )
            for task in out.get("tasks", []):
                states[task["taskArn"]] = task.get("lastStatus")
        return states

    def task_group(self, cluster: str, task_arn: str) -> str | None:
        """The task's ``group`` (``service:NAME`` for a service's task), None if unknown."""
        out = self._call(
            "DescribeTasks", self.client.describe_tasks, cluster=cluster, tasks=[task_arn]
        )
        tasks = out.get("tasks", [])
        group = tasks[0].get("group") if tasks else None
        return group if isinstance(group, str) else None

    def set_desired(self, ref: ServiceRef, count: int) -> None:
        """Set ``desiredCount`` to an absolute value."""
        if self.dry_run:
            self.planned.append({"call": "UpdateService", "service": str(ref), "desired": count})
            return
        self._call(
            "UpdateService",
            self.client.update_service,
            cluster=ref.cluster,
            service=ref.service,
            desiredCount=count,
        )

    def force_deploy(self, ref: ServiceRef) -> None:
        """``UpdateService`` with ``forceNewDeployment``: every task is replaced."""
        if self.dry_run:
            self.planned.append({"call": "UpdateService", "service": str(ref), "force": True})
            return
        self._call(
            "UpdateService",
            self.client.update_service,
            cluster=ref.cluster,
            service=ref.service,
            forceNewDeployment=True,
        )


@dataclass
class Messenger:
    """SNS alerts and the dead-letter queue."""

    sns: SNSClient
    sqs: SQSClient
    retry: RetryPolicy
    topic_arn: str | None
    dlq_url: str | None
    dry_run: bool = False
    planned: list[dict[str, Any]] = field(default_factory=list)
    log_retry: RetryLogger | None = None
    dlq_retry: RetryPolicy | None = None  # the DLQ send's own (later) deadline

    def alert(self, subject: str, body: dict[str, Any]) -> bool:
        """Publish to the topic; False when no topic is configured."""
        if self.topic_arn is None:
            return False
        message = json.dumps(body, sort_keys=True, default=str)
        if self.dry_run:
            self.planned.append({"call": "Publish", "subject": subject, "message": body})
            return True
        call_aws(
            self.retry,
            "Publish",
            self.sns.publish,
            on_retry=self.log_retry("Publish") if self.log_retry else None,
            TopicArn=self.topic_arn,
            Subject=subject[:100],
            Message=message,
        )
        return True

    def dead_letter(self, body: dict[str, Any]) -> bool:
        """Send a failed event to the DLQ; False when no queue is configured."""
        if self.dlq_url is None or self.dry_run:
            return False
        call_aws(
            self.dlq_retry or self.retry,
            "SendMessage",
            self.sqs.send_message,
            on_retry=self.log_retry("SendMessage") if self.log_retry else None,
            QueueUrl=self.dlq_url,
            MessageBody=json.dumps(body, sort_keys=True, default=str),
        )
        return True
