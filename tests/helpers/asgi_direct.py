"""Calling an ASGI middleware directly, in process: a quiet graceful() and a recording server side."""

from __future__ import annotations

import asyncio
from typing import Any

import spotgrace


def quiet(**options: Any) -> Any:
    """A graceful() that installs no handlers and never exits the test process."""
    return spotgrace.graceful(signals=(), exit_code="return", **options)


def http_scope(path: str = "/work") -> dict[str, Any]:
    """A minimal HTTP scope."""
    return {"type": "http", "path": path, "method": "GET", "headers": [], "query_string": b""}


class Recorder:
    """The server side of one request: what the app sent, and a receive that never ends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def start(self) -> dict[str, Any]:
        """The response start message."""
        return next(m for m in self.sent if m["type"] == "http.response.start")

    def closes(self) -> bool:
        """Whether the response said ``Connection: close``."""
        return (b"connection", b"close") in list(self.start()["headers"])
