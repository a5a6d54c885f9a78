"""A process's descendants, read from ``/proc``, and killing them (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal

from .._core._sentinel import sentinel_pids

__all__ = ["descendants", "kill_descendants"]


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children first), from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(0), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def kill_descendants(root: int, sig: signal.Signals = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to every descendant of ``root``; returns the pids signalled.

    spotgrace's own sentinel is spared: it is what ends this process at the
    deadline if the exit itself hangs.
    """
    sent = []
    spared = sentinel_pids()
    for pid in descendants(root):
        if pid in spared:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent.append(pid)
    return sent
