"""A watchdog process for a threads-pool worker whose tasks may hold the GIL.

In a threads-pool worker every task runs in the main process. A task that
holds the GIL (a C extension or a ``ctypes.PyDLL`` call that does not release
it) stops every Python thread there: the signal handlers, the sequence and
spotgrace's watchdog. The platform's SIGKILL then ends the worker, late.

Python's C-level signal handler needs no GIL: it writes the signal number to
the "wakeup fd" (:func:`signal.set_wakeup_fd`). This module makes that fd a
pipe to a small process of its own, which waits there. On SIGTERM or SIGINT
it waits out the budget; if the worker is still alive then, it SIGKILLs the
worker's descendants and the worker, and says so on stderr. When the worker
exits, the pipe closes and the watcher ends.

    python -c "...main(sys.argv[1:])" FD PID BUDGET SIGNUMS
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from ._tree import descendants

__all__ = ["main", "start"]

#: ``-m spotgrace.celery._gilwatch`` would import this module twice (the package imports it).
_RUN = (
    "import sys; from spotgrace.celery._gilwatch import main; raise SystemExit(main(sys.argv[1:]))"
)


def start(budget: float, signums: list[int]) -> int | None:
    """Start the watcher for this process; its pid, or ``None`` if the wakeup fd is taken."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(r)
        os.close(w)
        return None
    if old != -1:  # someone else's: leave it
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)
        return None
    args = [str(r), str(os.getpid()), repr(budget), ",".join(str(s) for s in signums)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, *args],
        pass_fds=(r,),
        stdin=subprocess.DEVNULL,
        start_new_session=False,
    )
    os.close(r)
    return proc.pid


def _say(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, "level": "error", **fields}, default=str)
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def main(argv: list[str]) -> int:
    """Wait for a signal byte on the pipe; kill the worker if it outlives the budget."""
    fd, pid, budget = int(argv[0]), int(argv[1]), float(argv[2])
    wanted = {int(s) for s in argv[3].split(",") if s}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the group: not ours
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so does a group-wide SIGTERM
    while True:
        data = os.read(fd, 64)
        if not data:
            return 0  # the worker is gone
        if wanted.intersection(data):
            break
    end = time.monotonic() + budget
    while time.monotonic() < end:
        time.sleep(0.05)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return 0
        if os.getppid() != pid:
            return 0  # the worker exited (this process was re-parented)
    killed = [p for p in descendants(pid) if p != os.getpid()]
    for p in [pid, *killed]:  # the worker first: it must not fork again
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    _say(
        "celery.gil_watchdog_killed",
        worker_pid=pid,
        budget=budget,
        pool_killed=killed,
        why="the worker's main process did not end by the deadline (a task holding the GIL?)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
