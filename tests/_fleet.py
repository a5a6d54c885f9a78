"""Helpers for the fleet tests (import the ``*_fixture`` names into a test module): moto in SERVER mode on 127.0.0.1, an emulated ECS
cluster with services, an SNS topic whose alerts land in an SQS queue, a
dead-letter queue, the DynamoDB state table, and a fault-injecting HTTP proxy.

Nothing reaches AWS: the clients get fake credentials, region us-east-1 and
an endpoint on 127.0.0.1; ``AWS_ENDPOINT_URL`` is set too, for code that
builds its own clients (the Lambda handler).

What moto cannot show (asserted where it matters, documented in docs/fleet.md):
- a ``desiredCount`` change makes ``runningCount`` equal to it at once, so
  "steady" follows every scale-out immediately (no 2-minute gap, no pending
  tasks, no real replacement of an interrupted task);
- ``forceNewDeployment`` only renews the PRIMARY deployment's id (no second
  deployment, no rolling replacement, no Spot placement);
- rolloutState is fixed when the service is created (``MOTO_ECS_SERVICE_RUNNING``
  decides COMPLETED or IN_PROGRESS) and never changes;
- no capacity providers place anything, so Spot shortage is only an event we send;
- EventBridge ``TestEventPattern`` is not implemented (rules with SQS targets
  stand in for it), and IAM is not enforced (permission errors are injected).
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from spotgrace.fleet import (
    AwsClients,
    FleetConfig,
    RetryPolicy,
    ServiceRef,
    handle_event,
    make_clients,
)

EVENTS_DIR = Path(__file__).parent / "fleet_events"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
FAKE_CREDS: dict[str, Any] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from tests/fleet_events/ (name without .json)."""
    data: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    return data


@pytest.fixture(scope="session", name="moto_url")
def moto_url_fixture() -> Iterator[str]:
    """One moto server for the session, on a free port of 127.0.0.1."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def clients_for(url: str) -> AwsClients:
    """Clients like make_clients() makes (botocore retries off), pointed at ``url``."""
    return make_clients(region=REGION, endpoint_url=url)


@dataclass
class Proxy:
    """An HTTP proxy in front of moto that can answer chosen operations with an
    AWS error a given number of times (throttling, AccessDenied ...)."""

    target: str
    url: str = ""
    faults: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def fail(
        self, operation: str, code: str, times: int, status: int = 400, *, after: int = 0
    ) -> None:
        """Answer the next ``times`` calls of ``operation`` with error ``code`` (after
        letting ``after`` calls through)."""
        queue = self.faults.setdefault(operation, [])
        queue.extend([(0, "")] * after + [(status, code)] * times)

    def start(self) -> None:
        proxy = self
        target = self.target.removeprefix("http://")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                op = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                json_protocol = bool(op)
                if not op:  # the query protocol (SNS): Action=... in a form body
                    form = dict(x.split("=", 1) for x in body.decode().split("&") if "=" in x)
                    op = form.get("Action", "")
                proxy.seen.append(op)
                queue = proxy.faults.get(op)
                fault = queue.pop(0) if queue else None
                if fault is not None and fault[0]:
                    status, code = fault
                    proxy.injected.append(f"{op}:{code}")
                    if json_protocol:
                        payload = json.dumps({"__type": code, "message": f"injected {code}"})
                        content_type = "application/x-amz-json-1.1"
                    else:
                        payload = (
                            "<ErrorResponse><Error><Type>Sender</Type>"
                            f"<Code>{code}</Code><Message>injected {code}</Message>"
                            "</Error><RequestId>injected</RequestId></ErrorResponse>"
                        )
                        content_type = "text/xml"
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("x-amzn-ErrorType", code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload.encode())
                    return
                conn = http.client.HTTPConnection(target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class World:
    """An emulated AWS account for one test."""

    url: str
    cluster: str = "prod"
    clients: AwsClients = field(init=False)
    topic_arn: str = ""
    alerts_url: str = ""
    dlq_url: str = ""
    table: str = "spotgrace-fleet"
    sleeps: list[float] = field(default_factory=list)
    logs: io.StringIO = field(default_factory=io.StringIO)
    now: float = 1_700_000_000.0

    def __post_init__(self) -> None:
        self.clients = clients_for(self.url)

    @property
    def cluster_arn(self) -> str:
        return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{self.cluster}"

    def setup(self) -> World:
        ecs = self.clients.ecs
        ecs.create_cluster(clusterName=self.cluster)
        # "bridge": moto cannot start awsvpc tasks without EC2 networking it mishandles.
        ecs.register_task_definition(
            family="web",
            networkMode="bridge",
            containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}],
        )
        sqs = self.clients.sqs
        self.alerts_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        self.dlq_url = sqs.create_queue(QueueName="fleet-dlq")["QueueUrl"]
        alerts_arn = sqs.get_queue_attributes(QueueUrl=self.alerts_url, AttributeNames=["QueueArn"])
        self.topic_arn = self.clients.sns.create_topic(Name="spot-alerts")["TopicArn"]
        self.clients.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=alerts_arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        self.clients.dynamodb.create_table(
            TableName=self.table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return self

    def service(
        self, name: str, desired: int, *, steady: bool = True, tags: dict[str, str] | None = None
    ) -> ServiceRef:
        """Create a service; ``steady`` makes moto report its rollout COMPLETED."""
        # moto reads MOTO_ECS_SERVICE_RUNNING (in this process: the server is a thread)
        # when it creates a service: running == desired gives a COMPLETED rollout.
        os.environ["MOTO_ECS_SERVICE_RUNNING"] = str(desired if steady else 0)
        try:
            self.clients.ecs.create_service(
                cluster=self.cluster,
                serviceName=name,
                taskDefinition="web",
                desiredCount=desired,
                launchType="FARGATE",
                tags=[{"key": k, "value": v} for k, v in (tags or {}).items()],
            )
        finally:
            del os.environ["MOTO_ECS_SERVICE_RUNNING"]
        return ServiceRef(self.cluster, name)

    def task(self, service: str) -> str:
        """Start a task in the service's group; returns its ARN."""
        out = self.clients.ecs.run_task(
            cluster=self.cluster,
            taskDefinition="web",
            launchType="FARGATE",
            group=f"service:{service}",
        )
        return str(out["tasks"][0]["taskArn"])

    def stop_task(self, task_arn: str) -> None:
        self.clients.ecs.stop_task(
            cluster=self.cluster, task=task_arn, reason="Your Spot Task was interrupted."
        )

    def describe(self, ref: ServiceRef) -> dict[str, Any]:
        out = self.clients.ecs.describe_services(cluster=ref.cluster, services=[ref.service])
        svc: dict[str, Any] = dict(out["services"][0])
        return svc

    def desired(self, ref: ServiceRef) -> int:
        return int(self.describe(ref)["desiredCount"])

    def config(self, *services: ServiceRef, **env: str) -> FleetConfig:
        """A config from SPOTGRACE_FLEET_* variables, with this world's resources."""
        base = {
            "SPOTGRACE_FLEET_SERVICES": ",".join(str(s) for s in services),
            "SPOTGRACE_FLEET_TOPIC_ARN": self.topic_arn,
            "SPOTGRACE_FLEET_DLQ_URL": self.dlq_url,
            "SPOTGRACE_FLEET_TABLE": self.table,
        }
        config = FleetConfig.from_env({**base, **env})
        retry = RetryPolicy(
            max_attempts=config.retry.max_attempts,
            base_delay=config.retry.base_delay,
            max_delay=config.retry.max_delay,
            sleep=self.sleeps.append,
        )
        return dataclasses.replace(config, retry=retry)

    def handle(
        self,
        event: dict[str, Any],
        config: FleetConfig,
        *,
        clients: AwsClients | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return handle_event(
            event,
            config=config,
            clients=clients or self.clients,
            dry_run=dry_run,
            request_id="req-test",
            clock=lambda: self.now,
            log_stream=self.logs,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines()]

    def _drain(self, url: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = self.clients.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            msgs = got.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts published to the topic since the last call (via the SQS subscription)."""
        return self._drain(self.alerts_url)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self._drain(self.dlq_url)

    def interruption(
        self,
        task_arn: str,
        *,
        sample: str = "task-state-change-termination-notice",
        event_id: str | None = None,
        group: str | None = None,
        time: str | None = None,
        **detail: Any,
    ) -> dict[str, Any]:
        """A sample interruption event re-pointed at this world's cluster and task."""
        event = load_event(sample)
        event["region"], event["account"] = REGION, ACCOUNT
        event["resources"] = [task_arn]
        event["detail"] |= {"clusterArn": self.cluster_arn, **detail}
        if "taskArn" in event["detail"]:
            event["detail"]["taskArn"] = task_arn
        if group is not None:
            event["detail"]["group"] = group
        if event_id is not None:
            event["id"] = event_id
        event["time"] = time or _iso(self.now - 5)
        return event

    def service_action(
        self, ref: ServiceRef, name: str, *, event_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        event = load_event("service-action-placement-failure")
        event["id"] = event_id
        event["region"], event["account"] = REGION, ACCOUNT
        event["time"] = _iso(self.now)
        event["resources"] = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{ref.cluster}/{ref.service}"]
        event["detail"] |= {"clusterArn": self.cluster_arn, "eventName": name}
        if name != "SERVICE_TASK_PLACEMENT_FAILURE":
            event["detail"] = {k: v for k, v in event["detail"].items() if k != "reason"}
            event["detail"]["eventType"] = "INFO"
        elif reason is not None:
            event["detail"]["reason"] = reason
        return event


def tick(event_id: str = "tick-1") -> dict[str, Any]:
    """A scheduled-rule event (the hold-off timer)."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2023-01-01T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/spotgrace-fleet-tick"],
        "detail": {},
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(name="aws_env")
def aws_env_fixture(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    """Fake credentials and moto's endpoint in the environment; returns the URL."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_CREDS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_CREDS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_url


@pytest.fixture(name="world")
def world_fixture(aws_env: str) -> World:
    """A fresh emulated account (moto reset) with the shared resources."""
    reset_moto(aws_env)
    return World(aws_env).setup()


@pytest.fixture(name="proxy")
def proxy_fixture(moto_url: str) -> Iterator[Proxy]:
    p = Proxy(moto_url)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def boto_client(service: str, url: str) -> Any:
    session: Any = boto3.session.Session(region_name=REGION, **FAKE_CREDS)
    return session.client(service, endpoint_url=url)


Sleep = Callable[[float], None]
