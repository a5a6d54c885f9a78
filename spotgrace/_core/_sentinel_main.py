"""The sentinel process: relays signal bytes and ends its parent at the deadline.

Run by :mod:`spotgrace._core._sentinel` as ``python -I -S <this file> ...``;
it imports nothing of spotgrace and nothing beyond the standard library's
core, so that it starts in milliseconds.

Arguments: ``PARENT_PID SIGNAL_FD RELAY_FD COMMAND_FD BUDGET SIGNALS [SLACK]``
(``SIGNALS``: comma-separated numbers). It reads the parent's wake-up pipe
(``SIGNAL_FD``: the bytes the parent's C-level signal handler writes, without
the GIL) and copies every byte to ``RELAY_FD``, which the parent's coordinator
reads (its first byte, a zero, says it runs: until then the parent reads the
wake-up pipe itself too). The first byte of one of ``SIGNALS`` starts its own deadline,
``BUDGET`` seconds later; the parent moves it with commands on ``COMMAND_FD``
(one line each: ``arm <CLOCK_MONOTONIC seconds>``, ``disarm`` and ``quit``).
The first ``arm`` after a deadline of its own replaces it, up to ``SLACK``
seconds later: that is the coordinator's notice, read late when the GIL was
held, and its deadline is the one the app's hooks were told
(``grace.remaining()``); any later ``arm`` may only bring it closer. At the
deadline it sends the parent SIGKILL: no GIL, no Python code of the parent's is
needed for that. It leaves when the command pipe ends, on ``quit``, or when the
parent is gone.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

#: How often the parent's existence is checked when nothing else happens.
PARENT_CHECK = 0.5


def main(argv: list[str]) -> int:
    """Run until told to quit, the parent is gone, or the parent is ended at its deadline."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        # Blocked since the exec (the parent's doing): ignored now, and for good.
        signal.signal(sig, signal.SIG_IGN)
    parent, sig_fd, relay_fd, cmd_fd = (int(a) for a in argv[1:5])
    budget = float(argv[5])
    watched = frozenset(int(s) for s in argv[6].split(",") if s)
    slack = float(argv[7]) if len(argv) > 7 else 0.0
    os.set_blocking(relay_fd, False)
    try:  # noqa: SIM105 - the hello (a wake-up byte): the parent reads the relay only from now on
        os.write(relay_fd, b"\0")
    except OSError:
        pass
    deadline: float | None = None
    own = False  # the deadline is this process's own, from a signal byte
    latest = 0.0  # how far the coordinator's first arm may move an own deadline
    pending = b""
    reading = [sig_fd, cmd_fd]
    while True:
        if os.getppid() != parent:
            return 0
        timeout = PARENT_CHECK
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        ready, _, _ = select.select(reading, [], [], timeout)
        if sig_fd in ready:
            data = _read(sig_fd)
            if data is None:  # the parent closed its wake-up pipe: only the deadline is left
                reading.remove(sig_fd)
            elif data:
                if deadline is None and watched.intersection(data):
                    deadline = time.monotonic() + budget
                    own, latest = True, deadline + slack
                try:  # noqa: SIM105 - no contextlib: it starts faster without
                    os.write(relay_fd, data)
                except OSError:  # full (the parent is not reading) or closed
                    pass
        if cmd_fd in ready:
            chunk = os.read(cmd_fd, 4096)
            if not chunk:
                return 0
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                word, _, value = line.partition(b" ")
                if word == b"quit":
                    return 0
                if word == b"disarm":
                    deadline, own = None, False
                elif word == b"arm":
                    at = float(value)
                    if own:  # the notice, read late: its deadline is the one announced
                        deadline, own = min(at, latest), False
                    else:
                        deadline = at if deadline is None else min(deadline, at)
        if deadline is not None and time.monotonic() >= deadline:
            if os.getppid() == parent:  # still ours: the pid cannot have been reused
                os.kill(parent, signal.SIGKILL)
            return 0


def _read(fd: int) -> bytes | None:
    """What is in the pipe (``b""``: nothing after all), or None at its end.

    Until the parent has seen the hello it reads the wake-up pipe too, and may
    have taken the bytes ``select`` reported.
    """
    try:
        return os.read(fd, 4096) or None
    except BlockingIOError:
        return b""


if __name__ == "__main__":
    sys.exit(main(sys.argv))
