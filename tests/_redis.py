"""A real redis-server for the tests: started once per session on 127.0.0.1.

Import the fixtures into a test module (``from _redis import
redis_server_fixture, redis_url_fixture``); they are named ``redis_server``
and ``redis_url``. The server runs on a free port in a temp dir, keeps nothing on
disk, and is stopped after the session. Without a ``redis-server`` binary the
tests that use it skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "redis_server_fixture", "redis_url_fixture"]


@dataclass(frozen=True)
class RedisServer:
    """A running test server."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client for database 0."""
        return redis.Redis(host=self.host, port=self.port, db=0, socket_timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(workdir: Path) -> tuple[subprocess.Popen[bytes], RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server not found (scripts/dev.py test installs it as root via apt-get)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the Redis tests", pytrace=False)
        pytest.skip(msg)
    last_error: Exception | None = None
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = _free_port()
        log = workdir / f"redis-{port}.log"
        proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", str(log)],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        server = RedisServer("127.0.0.1", port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            client = server.client()
            try:
                client.ping()
                return proc, server
            except redis.ConnectionError as exc:
                last_error = exc
                time.sleep(0.05)
            finally:
                client.close()
        proc.kill()
        proc.wait()
    pytest.fail(f"redis-server did not start: {last_error}", pytrace=False)


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session."""
    proc, server = _start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(name="redis_url")
def redis_url_fixture(redis_server: RedisServer) -> str:
    """The server's URL, with an empty database for this test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url
