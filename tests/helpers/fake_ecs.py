"""A minimal stand-in for the ECS task metadata v4 and agent endpoints.

Just enough for ``spotgrace doctor`` to ask "do they answer?". The full fake
(faults, IMDSv2, scheduled interruptions) is ``spotgrace.testing`` from the
watchers issue; switch to it once it lands.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeECS:
    """What the fake answers; change the fields while it runs."""

    task: dict[str, Any] = field(
        default_factory=lambda: {
            "Cluster": "default",
            "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/default/abc",
            "LaunchType": "FARGATE",
            "KnownStatus": "RUNNING",
            "DesiredStatus": "RUNNING",
            "Containers": [],
        }
    )
    protection: dict[str, Any] = field(
        default_factory=lambda: {"protection": {"ProtectionEnabled": False}}
    )
    base: str = ""

    @property
    def metadata_uri(self) -> str:
        return f"{self.base}/v4/abc"

    @property
    def agent_uri(self) -> str:
        return f"{self.base}/api/abc"


@contextmanager
def fake_ecs() -> Iterator[FakeECS]:
    """Serve a :class:`FakeECS` on 127.0.0.1 (a free port) for the block."""
    state = FakeECS()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v4/abc/task":
                self._send(200, state.task)
            elif self.path == "/api/abc/task-protection/v1/state":
                self._send(200, state.protection)
            else:
                self._send(404, {"error": {"Code": "NotFound", "Message": self.path}})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
