"""Timing a process's exit without the error ``Popen.wait(timeout)`` adds."""

from __future__ import annotations

import subprocess
import threading
from typing import Any


def wait_exactly(proc: subprocess.Popen[Any], limit: float) -> int:
    """Wait in ``waitpid`` itself and return the exit code.

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms, which would be
    added to an exit time. A timer SIGKILLs a process still alive after ``limit`` s.
    """
    timer = threading.Timer(limit, proc.kill)
    timer.start()
    try:
        return proc.wait()
    finally:
        timer.cancel()
