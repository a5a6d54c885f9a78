"""The fake endpoints themselves: routes, AWS validation rules, scenario, faults."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spotgrace.testing import FakeEndpoints

TTL = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN = "X-aws-ec2-metadata-token"
SPOT = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"


@pytest.fixture
def fake() -> Iterator[FakeEndpoints]:
    with FakeEndpoints() as server:
        yield server


@pytest.fixture
def client(fake: FakeEndpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, trust_env=False, timeout=10) as c:
        yield c


def token(client: httpx.Client, ttl: str = "60") -> str:
    answer = client.put("/latest/api/token", headers={TTL: ttl})
    assert answer.status_code == 200
    return answer.text


def test_listens_on_loopback_with_a_random_port(fake: FakeEndpoints) -> None:
    assert fake.url == f"http://127.0.0.1:{fake.port}"
    assert fake.port > 0
    env = fake.env()
    assert env["ECS_CONTAINER_METADATA_URI_V4"].startswith(fake.url + "/v4/")
    assert env["ECS_AGENT_URI"].startswith(fake.url + "/api/")
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == fake.url


def test_two_servers_do_not_share_state() -> None:
    with FakeEndpoints() as a, FakeEndpoints() as b:
        assert a.port != b.port
        a.interrupt()
        assert a.interrupted_at is not None
        assert b.interrupted_at is None


def test_task_and_container_metadata(fake: FakeEndpoints, client: httpx.Client) -> None:
    base = fake.env()["ECS_CONTAINER_METADATA_URI_V4"]
    task = client.get(base + "/task").json()
    assert task["KnownStatus"] == task["DesiredStatus"] == "RUNNING"
    assert task["LaunchType"] == "FARGATE"
    assert task["TaskARN"].startswith("arn:aws:ecs:")
    container = client.get(base).json()
    assert container["Name"] == "app"
    fake.interrupt()
    assert client.get(base + "/task").json()["DesiredStatus"] == "STOPPED"
    assert client.get(base).json()["DesiredStatus"] == "STOPPED"


@pytest.mark.parametrize("ttl", ["", "0", "21601", "abc", "-5"])
def test_token_ttl_is_validated(client: httpx.Client, ttl: str) -> None:
    headers = {TTL: ttl} if ttl else {}
    assert client.put("/latest/api/token", headers=headers).status_code == 400


def test_token_request_with_x_forwarded_for_is_forbidden(client: httpx.Client) -> None:
    answer = client.put("/latest/api/token", headers={TTL: "60", "X-Forwarded-For": "1.2.3.4"})
    assert answer.status_code == 403


def test_metadata_needs_a_valid_token(fake: FakeEndpoints, client: httpx.Client) -> None:
    assert client.get(SPOT).status_code == 401
    assert client.get(SPOT, headers={TOKEN: "made-up"}).status_code == 401
    value = token(client)
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 404
    fake.expire_tokens()
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 401


def test_token_expires_after_its_ttl(client: httpx.Client) -> None:
    value = token(client, ttl="1")
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 404
    time.sleep(1.3)
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 401


def test_scheduled_interruption(fake: FakeEndpoints, client: httpx.Client) -> None:
    value = token(client)
    fake.interrupt(after=0.5, warning=120, action="hibernate")
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 404
    assert fake.interrupted_at is None
    deadline = time.monotonic() + 10
    while fake.interrupted_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = client.get(SPOT, headers={TOKEN: value}).json()
    assert doc["action"] == "hibernate"
    assert doc["time"].endswith("Z")
    assert client.get("/notice").json()["time"] == doc["time"]


def test_rebalance(fake: FakeEndpoints, client: httpx.Client) -> None:
    value = token(client)
    assert client.get(REBALANCE, headers={TOKEN: value}).status_code == 404
    fake.rebalance()
    assert "noticeTime" in client.get(REBALANCE, headers={TOKEN: value}).json()
    assert client.get(SPOT, headers={TOKEN: value}).status_code == 404


def test_reset(fake: FakeEndpoints, client: httpx.Client) -> None:
    fake.interrupt()
    fake.fail("*", "status", times=None)
    fake.reset()
    assert client.get("/notice").status_code == 404
    assert fake.interrupted_at is None
    assert fake.requests() == [fake.requests()[0]]  # just the one above


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("status", lambda r: r.status_code == 500 and "error" in r.json()),
        ("garbage", lambda r: r.status_code == 200 and r.content.startswith(b"<html>")),
        ("wrong", lambda r: r.json() == ["not", "the", "expected", "shape"]),
        ("huge", lambda r: len(r.content) > 1024 * 1024),
        ("throttle", lambda r: r.json()["error"]["Code"] == "ThrottlingException"),
        ("failure", lambda r: r.json()["failure"]["Reason"] == "TASK_NOT_VALID"),
    ],
)
def test_fault_kinds(fake: FakeEndpoints, client: httpx.Client, kind: str, check: object) -> None:
    fake.fail("task", kind, times=1)
    url = fake.env()["ECS_CONTAINER_METADATA_URI_V4"] + "/task"
    assert check(client.get(url))  # type: ignore[operator]
    assert client.get(url).json()["KnownStatus"] == "RUNNING"  # once only


def test_fault_reset_closes_the_connection(fake: FakeEndpoints, client: httpx.Client) -> None:
    fake.fail("notice", "reset", times=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/notice")
    assert client.get("/notice").status_code == 404


def test_fault_slow(fake: FakeEndpoints, client: httpx.Client) -> None:
    fake.fail("notice", "slow", delay=0.5)
    started = time.monotonic()
    assert client.get("/notice").status_code == 404
    assert time.monotonic() - started >= 0.45


def test_faults_apply_to_their_route_only_and_star_to_all(
    fake: FakeEndpoints, client: httpx.Client
) -> None:
    fake.fail("spot", "status", times=None)
    assert client.get("/notice").status_code == 404
    fake.clear_faults()
    fake.fail("*", "status", times=2)
    assert client.get("/notice").status_code == 500
    assert client.put("/latest/api/token", headers={TTL: "5"}).status_code == 500
    assert client.get("/notice").status_code == 404


def test_unknown_fault_or_route_is_refused(fake: FakeEndpoints) -> None:
    with pytest.raises(ValueError, match="route"):
        fake.fail("nowhere", "status")
    with pytest.raises(ValueError, match="fault"):
        fake.fail("task", "explode")


# ---------------------------------------------------------------- agent


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"ProtectionEnabled": "yes"}',
        b'{"ProtectionEnabled": true, "ExpiresInMinutes": 0}',
        b'{"ProtectionEnabled": true, "ExpiresInMinutes": 2881}',
        b'{"ProtectionEnabled": true, "ExpiresInMinutes": 1.5}',
        b'{"ProtectionEnabled": true, "ExpiresInMinutes": true}',
    ],
)
def test_protection_validation(fake: FakeEndpoints, client: httpx.Client, body: bytes) -> None:
    url = fake.env()["ECS_AGENT_URI"] + "/task-protection/v1/state"
    answer = client.put(url, content=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["Code"] == "InvalidParameterException"
    assert fake.protection == {}


def test_protection_round_trip(fake: FakeEndpoints, client: httpx.Client) -> None:
    url = fake.env()["ECS_AGENT_URI"] + "/task-protection/v1/state"
    assert client.get(url).json()["protection"]["ProtectionEnabled"] is False
    on = client.put(url, json={"ProtectionEnabled": True}).json()["protection"]  # default 120
    assert on["ProtectionEnabled"] is True
    assert on["ExpirationDate"].endswith("Z")
    off = client.put(url, json={"ProtectionEnabled": False}).json()["protection"]
    assert off == {"ExpirationDate": None, "ProtectionEnabled": False, "TaskArn": on["TaskArn"]}


def test_requests_are_recorded(fake: FakeEndpoints, client: httpx.Client) -> None:
    client.get("/notice")
    token(client)
    (req,) = fake.requests("token")
    assert (req.method, req.path, req.status) == ("PUT", "/latest/api/token", 200)
    assert [r.route for r in fake.requests()] == ["notice", "token"]
    assert fake.tokens_issued() != []


def test_python_m_spotgrace_testing_prints_the_variables() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "spotgrace.testing"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("export ECS_CONTAINER_METADATA_URI_V4=http://127.0.0.1:")
        finally:
            proc.terminate()
            proc.wait(10)


def test_pytest_plugin_fixture(tmp_path: Path) -> None:
    # pytester is not enabled in this suite's conftest: run pytest in a subprocess.
    (tmp_path / "test_user.py").write_text(
        """
import os
import httpx

def test_uses_the_fake(spotgrace_fake):
    uri = os.environ["ECS_CONTAINER_METADATA_URI_V4"]
    assert uri.startswith(spotgrace_fake.url)
    spotgrace_fake.interrupt()
    with httpx.Client(trust_env=False) as client:
        assert client.get(uri + "/task").json()["DesiredStatus"] == "STOPPED"
"""
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "spotgrace.testing.pytest_plugin", "test_user.py"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
