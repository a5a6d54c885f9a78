"""A real moto server (SQS over HTTP) on 127.0.0.1 for the tests, once per session.

Import the fixtures into a test module (``from ._moto import moto_endpoint_fixture,
aws_env_fixture``); they are named ``moto_endpoint`` and ``aws_env``. The server
runs in a subprocess (``moto.server.ThreadedMotoServer`` on port 0); clients
get fake credentials and the endpoint, so nothing can reach AWS.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from ._proc import Proc, kill_quietly, start

__all__ = [
    "FAKE_AWS",
    "FaultProxy",
    "aws_env_fixture",
    "make_queue",
    "moto_endpoint_fixture",
    "sqs_client",
]

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
    if attributes.get("FifoQueue") == "true":
        name += ".fifo"  # SQS requires it of a FIFO queue's name
    return str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of the moto server, for SQS faults.

    Forwards every request. ``fail_heartbeats`` set: ``ChangeMessageVisibility``
    (batch or not) calls that *extend* visibility (> 0 s) get a 503, as when
    SQS cannot be reached; put-backs (0 s) still pass. ``delay_heartbeats`` > 0:
    those calls are held that many seconds before being forwarded (a slow
    endpoint). ``refused`` and ``delayed`` count them. ``delay_deliveries`` > 0:
    a ``ReceiveMessage`` reply that carries messages is held that many seconds
    after moto answered (a slow network or server: the visibility clock runs
    meanwhile). Use as a context manager.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_heartbeats = threading.Event()
        self.delay_heartbeats = 0.0
        self.delay_deliveries = 0.0
        #: Set while a delayed heartbeat call is held.
        self.holding = threading.Event()
        self.refused = 0
        self.delayed = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _is_heartbeat(self, target: str, body: bytes) -> bool:
        if "ChangeMessageVisibility" not in target:
            return False
        data = json.loads(body or b"{}")
        entries = data.get("Entries") or [data]
        return any(int(e.get("VisibilityTimeout", 0)) > 0 for e in entries)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._is_heartbeat(self.headers.get("X-Amz-Target", ""), body):
                    if proxy.fail_heartbeats.is_set():
                        proxy.refused += 1
                        self._reply(503, [], b'{"__type":"ServiceUnavailable","message":"fault"}')
                        return
                    if proxy.delay_heartbeats > 0:
                        proxy.delayed += 1
                        proxy.holding.set()
                        time.sleep(proxy.delay_heartbeats)
                        proxy.holding.clear()
                up = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                skip = ("host", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                try:
                    up.request("POST", self.path, body, headers)
                    r = up.getresponse()
                    out = r.read()
                    if proxy.delay_deliveries > 0 and b'"Messages"' in out:
                        time.sleep(proxy.delay_deliveries)
                    self._reply(r.status, r.getheaders(), out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its process ended)
                finally:
                    up.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], out: bytes) -> None:
                self.send_response(status)
                drop = ("transfer-encoding", "connection", "content-length", "server", "date")
                for k, v in headers:
                    if k.lower() not in drop:
                        self.send_header(k, v)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler


#: The example worker the SQS tests run as real processes.
SQS_EXAMPLE = Path(__file__).parent.parent / "examples" / "sqs_worker.py"


@pytest.fixture(name="sqs")
def sqs_fixture(moto_endpoint: str) -> Any:
    return sqs_client(moto_endpoint)


@pytest.fixture(name="procs")
def procs_fixture() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        kill_quietly(p)


def start_worker(
    procs: list[Proc], env: dict[str, str], queue: str, results: Path, *args: str,
    stop_timeout: float = 20,
) -> Proc:  # fmt: skip
    """``examples/sqs_worker.py work`` against ``queue``, once it says it started."""
    p = start(
        SQS_EXAMPLE, "work", "--queue-url", queue, "--results-dir", str(results), *args,
        env={**env, "SPOTGRACE_STOP_TIMEOUT": str(stop_timeout)},
    )  # fmt: skip
    procs.append(p)
    p.wait_for_line('"sqs.started"', timeout=30)
    return p
