"""A real moto server (SQS over HTTP) on 127.0.0.1 for the tests, once per session.

Import the fixtures into a test module (``from ._moto import moto_endpoint_fixture,
aws_env_fixture``); they are named ``moto_endpoint`` and ``aws_env``. The server
runs in a subprocess (``moto.server.ThreadedMotoServer`` on port 0); clients
get fake credentials and the endpoint, so nothing can reach AWS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

__all__ = ["FAKE_AWS", "aws_env_fixture", "make_queue", "moto_endpoint_fixture", "sqs_client"]

#: Fake credentials and a region; config files pointed nowhere; no instance metadata.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test session closes our stdin
server.stop()
"""


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server running for the whole session."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **FAKE_AWS},
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"moto server did not start (got {port!r})")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(name="aws_env")
def aws_env_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment for a worker subprocess: fake credentials and the moto endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def sqs_client(endpoint: str) -> Any:
    """A boto3 SQS client for the moto server."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def make_queue(client: Any, prefix: str = "q", **attributes: str) -> str:
    """A new queue with a unique name; returns its URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
