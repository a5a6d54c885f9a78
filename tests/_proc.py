"""Running test programs as real subprocesses and reading their JSON events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).parent / "programs"
ROOT = Path(__file__).parent.parent


def parse_events(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON objects among ``lines`` (configure_json_logging output), in order."""
    found = []
    for line in lines:
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


@dataclass
class Proc:
    """A started program: its Popen, and every stdout line read so far.

    A reader thread collects the lines as they come (``select`` on the pipe
    plus a buffered ``readline`` would miss lines already in the buffer).
    """

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        """Wait for a stdout line containing ``text``; fail after ``timeout``."""
        end = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if text in line:
                        return line
                seen = len(self.lines)
                left = end - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
        raise AssertionError(f"no line with {text!r} within {timeout}s; got:\n" + self.output())

    def signal(self, sig: int) -> float:
        """Send ``sig``; returns the time.monotonic() it was sent."""
        sent = time.monotonic()
        os.kill(self.pid, sig)
        return sent

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for exit (killing it after ``timeout``) and for the rest of stdout."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()
            raise AssertionError("process did not exit in time:\n" + self.output()) from None
        finally:
            if self._reader is not None:
                self._reader.join(timeout=10)
        return self.popen.returncode

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        """The JSON event lines (configure_json_logging output) in order."""
        return parse_events(self.output().splitlines())

    def event(self, name: str) -> dict[str, Any]:
        matches = [e for e in self.events() if e.get("event") == name]
        assert matches, f"no {name!r} event in:\n{self.output()}"
        return matches[0]

    def printed(self) -> list[str]:
        """The plain (non-JSON) lines the program printed."""
        return [line for line in self.lines if not line.startswith("{")]


def start(
    program: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> Proc:
    """Start ``tests/programs/<program>`` (or a path) with this interpreter."""
    path = program if isinstance(program, Path) else PROGRAMS / program
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    popen = subprocess.Popen(
        [*(prefix or []), sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=ROOT,
        start_new_session=True,
    )
    return Proc(popen)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_quietly(proc: Proc) -> None:
    """Make sure the process group is gone and the pipe closed (for every test's finally)."""
    if proc.popen.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait()
    if proc.popen.stdout is not None:
        proc.popen.stdout.close()
