"""Real ``celery worker`` processes on a real Redis, for the tests and the bench.

``start_worker`` runs ``python -m celery -A celery_app worker`` (the app is
``tests/programs/celery_app.py``) in a session of its own, merges its stderr
into stdout, and waits for Celery's "ready" line. ``records`` reads back what
the tasks wrote to Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from tests._proc import PROGRAMS, Proc, parse_events

__all__ = [
    "QUEUE",
    "Worker",
    "kill_group",
    "queued",
    "records",
    "start_worker",
    "unacked",
    "wait_for",
]

#: The queue the test app's tasks go to.
QUEUE = "work"


class Worker:
    """A started worker: its process, name and spotgrace events file."""

    def __init__(self, proc: Proc, name: str, events_file: Path, health_file: Path) -> None:
        self.proc = proc
        self.name = name
        self.events_file = events_file
        self.health_file = health_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """spotgrace's events (``SPOTGRACE_EVENTS_FILE``) of this worker, in order."""
        try:
            return parse_events(self.events_file.read_text().splitlines())
        except FileNotFoundError:
            return []

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


def start_worker(
    broker: str,
    tmp: Path,
    *,
    name: str,
    pool: str = "prefork",
    concurrency: int = 2,
    mode: str = "spotgrace",
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> Worker:
    """Start a worker and wait until it consumes."""
    events = tmp / f"{name}.events.jsonl"
    health = tmp / f"{name}.health.json"
    full = {
        "CELERY_TEST_BROKER": broker,
        "CELERY_TEST_MODE": mode,
        "CELERY_TEST_WORKER": name,
        "SPOTGRACE_EVENTS_FILE": str(events),
        "SPOTGRACE_CELERY_HEALTH_FILE": str(health),
        "PYTHONPATH": os.pathsep.join([str(PROGRAMS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", pool,
           "-c", str(concurrency), "-n", f"{name}@%h", "-Q", QUEUE, "--without-heartbeat",
           "--without-gossip", "--without-mingle", "-l", "INFO"]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    popen = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**base, "PYTHONUNBUFFERED": "1", **full},
        cwd=PROGRAMS,
        start_new_session=True,
    )
    proc = Proc(popen)
    proc.wait_for_line(" ready.", timeout=ready_timeout)
    return Worker(proc, name, events, health)


def records(client: redis.Redis, kind: str) -> list[dict[str, Any]]:
    """The JSON records the test app's tasks appended to the list ``kind``."""
    return [json.loads(x) for x in client.lrange(kind, 0, -1)]


def queued(client: redis.Redis) -> int:
    """Messages waiting in the queue."""
    return int(client.llen(QUEUE))


def unacked(client: redis.Redis) -> int:
    """Messages delivered to some worker and not acked yet (kombu's Redis emulation)."""
    return int(client.hlen("unacked"))


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> float | None:
    """Poll ``predicate()`` until true; the time.monotonic() it became true, or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    return None


def kill_group(worker: Worker, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the worker's whole session (as a container's end would)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, sig)
