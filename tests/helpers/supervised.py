"""Run ``spotgrace run`` for real (optionally as PID 1 of a new PID namespace).

``Supervised`` starts the command with its stdout (the child's output) and
stderr (the supervisor's JSON events) read by two threads, so a test can wait
for a line without polling sleeps, send real signals to the supervisor, and
read the events back. PID namespaces need root and ``unshare``; the
``require_pid_namespace`` helper skips without them, except in CI, where it
fails: the PID 1 tests are the point of the suite.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "programs"
PYTHON = sys.executable
_T = TypeVar("_T")

#: Generous: the CI machine is a noisy shared 2-core box.
WAIT = 20.0


@functools.cache
def pid_namespace_problem() -> str | None:
    """Why a PID namespace cannot be made here, or None when it can."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    if os.geteuid() != 0:
        return "unshare --pid --mount-proc needs root"
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"unshare failed: {done.stderr.strip()}"
    return None


def require_pid_namespace() -> None:
    """Skip (fail in CI) when no PID namespace can be made."""
    problem = pid_namespace_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PID namespace tests must run in CI, but {problem}")
    pytest.skip(f"no PID namespace: {problem}")


class Supervised:
    """One ``python -m spotgrace run ARGS`` process and what it printed."""

    def __init__(
        self,
        args: list[str],
        *,
        pid1: bool,
        env: dict[str, str] | None = None,
        driver: Path | None = None,
    ) -> None:
        """``driver``: a Python script to run instead of ``-m spotgrace run``."""
        cmd = [PYTHON, *([str(driver)] if driver else ["-m", "spotgrace", "run"]), *args]
        if pid1:
            require_pid_namespace()
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *cmd]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
        full_env.update(env or {})
        self.pid1 = pid1
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()

    # ------------------------------------------------------------------ waiting

    def wait_line(self, text: str, *, timeout: float = WAIT) -> str:
        """The first stdout line containing ``text``; fails after ``timeout``."""
        return self._wait(lambda: next((x for x in self.out if text in x), None), text, timeout)

    def wait_lines(self, text: str, count: int, *, timeout: float = WAIT) -> None:
        """Until ``count`` stdout lines contain ``text``; fails after ``timeout``."""
        self._wait(
            lambda: True if sum(text in x for x in self.out) >= count else None, text, timeout
        )

    def wait_event(self, name: str, *, timeout: float = WAIT) -> dict[str, Any]:
        """The first supervisor event called ``name``; fails after ``timeout``."""
        return self._wait(
            lambda: next((e for e in self.events() if e["event"] == name), None), name, timeout
        )

    def _wait(self, find: Callable[[], _T | None], what: str, timeout: float) -> _T:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                left = end - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {what!r} within {timeout} s; {self.transcript()}")
                self._cond.wait(min(left, 0.5))

    def wait(self, *, timeout: float = WAIT) -> int:
        """The exit code of ``spotgrace run`` (as reported through unshare)."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    # ------------------------------------------------------------------ reading

    def events(self) -> list[dict[str, Any]]:
        """The supervisor's structured events so far, in order."""
        found = []
        for line in list(self.err):
            if line.startswith("{"):
                record = json.loads(line)
                if "event" in record:
                    found.append(record)
        return found

    def transcript(self) -> str:
        """stdout and stderr so far, for failure messages."""
        return "\nstdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)

    # ------------------------------------------------------------------ acting

    def supervisor_pid(self, *, timeout: float = WAIT) -> int:
        """The pid (in our namespace) of the supervisor: unshare's child when PID 1."""
        if not self.pid1:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = children.read_text().split()
            if text:
                return int(text[0])
            time.sleep(0.02)
        pytest.fail("unshare did not start the supervisor")

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the supervisor, as ``docker stop`` or ECS would."""
        os.kill(self.supervisor_pid(), sig)

    def kill(self) -> None:
        """Clean-up: SIGKILL whatever is left (unshare --kill-child takes PID 1 along)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        if not self.pid1:
            for event in self.events():
                if event["event"] == "child.started":
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(event["pid"], signal.SIGKILL)
        for reader in self._readers:
            reader.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
