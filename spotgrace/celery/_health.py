"""The worker's heartbeat file and the health check that reads it.

A Celery worker has no HTTP port for an ECS ``healthCheck`` to call. The
worker's main process rewrites a small JSON file from its event loop every
``interval`` seconds (atomically, mode 0600); ``python -m spotgrace.celery
health`` passes while that file is fresh and its process alive. A worker whose
event loop is stuck stops writing, so the check fails after ``max_age``.
This module imports no Celery: the check stays quick.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HEALTH_FILE_ENV", "HealthResult", "check_health", "default_health_file", "write_beat"]

#: Where the heartbeat goes when no path is given.
HEALTH_FILE_ENV = "SPOTGRACE_CELERY_HEALTH_FILE"
_DEFAULT_FILE = "/tmp/spotgrace-celery-health.json"  # a per-container file, mode 0600


def default_health_file() -> Path:
    """``$SPOTGRACE_CELERY_HEALTH_FILE``, else ``/tmp/spotgrace-celery-health.json``."""
    return Path(os.environ.get(HEALTH_FILE_ENV) or _DEFAULT_FILE)


def write_beat(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` (plus ``ts``) to ``path`` atomically, mode 0600."""
    data = json.dumps({**record, "ts": time.time()}, separators=(",", ":")).encode()
    fd, tmp = tempfile.mkstemp(prefix=".health-", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one check: ``ok`` and a one-line reason."""

    ok: bool
    reason: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_health(path: Path, *, max_age: float, ready: bool = False) -> HealthResult:
    """Whether the worker that writes ``path`` is alive (and, with ``ready``, taking work).

    Fails when the file is missing or unreadable, a symlink, another user's
    (unless the check runs as root), older than ``max_age``
    seconds, or names a process that is gone; with ``ready=True`` also once the
    worker has had its shutdown notice.
    """
    if not (max_age > 0 and math.isfinite(max_age)):
        raise ValueError(f"max_age must be more than 0 seconds, got {max_age!r}")
    try:
        st = os.lstat(path)
    except OSError as exc:
        return HealthResult(False, f"no readable heartbeat at {path}: {exc}")
    if stat.S_ISLNK(st.st_mode):
        return HealthResult(False, f"{path} is a symlink, not the worker's heartbeat")
    euid = os.geteuid()
    if st.st_uid != euid and euid != 0:  # root may check a worker started with --uid
        return HealthResult(False, f"{path} belongs to uid {st.st_uid}, not to this user ({euid})")
    try:
        record = json.loads(path.read_text())
        ts = float(record["ts"])
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return HealthResult(False, f"no readable heartbeat at {path}: {exc}")
    age = time.time() - ts
    if age > max_age:
        return HealthResult(False, f"heartbeat is {age:.1f} s old (max {max_age:g} s)")
    if not _alive(pid):
        return HealthResult(False, f"worker process {pid} is gone")
    if ready and not record.get("ready", False):
        return HealthResult(False, f"worker is {record.get('state', 'not ready')}")
    return HealthResult(True, f"worker {pid} {record.get('state', '?')}, beat {age:.1f} s ago")
