"""Process plumbing for ``spotgrace run``: subreaper, reaping, exit statuses.

Linux only. Kept apart from the supervisor loop so that each piece is small
and can be read (and tested) on its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from dataclasses import dataclass

__all__ = ["Exit", "reap_ready", "set_child_subreaper"]

#: ``PR_SET_CHILD_SUBREAPER`` from ``<linux/prctl.h>``.
PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> bool:
    """Make orphaned descendants of this process its children (``prctl``).

    Without it, a grandchild whose parent exits is re-parented to PID 1 (or
    the nearest subreaper) and this process can neither reap nor wait for it.
    Returns False when the call is not available or fails (not Linux, or a
    seccomp profile forbids ``prctl``); the caller logs that and carries on.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        result: int = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return result == 0


@dataclass(frozen=True)
class Exit:
    """How a process ended, from its ``waitpid`` status."""

    pid: int
    #: The exit status when it exited, else None.
    code: int | None
    #: The signal that killed it, else None.
    signal: signal.Signals | int | None

    @classmethod
    def from_status(cls, pid: int, status: int) -> Exit:
        """Decode a raw ``waitpid`` status."""
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                sig: signal.Signals | int = signal.Signals(number)
            except ValueError:
                sig = number
            return cls(pid, None, sig)
        return cls(pid, os.WEXITSTATUS(status), None)

    @property
    def shell_code(self) -> int:
        """The exit code a shell reports: the status, or 128 + N after signal N."""
        if self.signal is not None:
            return 128 + int(self.signal)
        return self.code if self.code is not None else 0

    @property
    def signal_name(self) -> str | None:
        """``"SIGKILL"`` and the like, or None when it exited normally."""
        if self.signal is None:
            return None
        return self.signal.name if isinstance(self.signal, signal.Signals) else str(self.signal)


def reap_ready() -> list[Exit]:
    """Collect every child that has already ended, without blocking.

    Both the main child and orphans re-parented to this process are reaped;
    stopped or continued children are not reported by ``waitpid`` without
    ``WUNTRACED``/``WCONTINUED`` and are left alone.
    """
    ended: list[Exit] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        except InterruptedError:  # pragma: no cover - PEP 475 retries, belt and braces
            continue
        if pid == 0:
            return ended
        ended.append(Exit.from_status(pid, status))
