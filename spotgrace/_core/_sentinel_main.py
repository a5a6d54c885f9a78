"""The sentinel process: relays signal bytes and ends its parent at the deadline.

Run by :mod:`spotgrace._core._sentinel` as ``python -I -S <this file> ...``;
it imports nothing of spotgrace and nothing beyond the standard library's
core, so that it starts in milliseconds.

Arguments: ``PARENT_PID SIGNAL_FD RELAY_FD COMMAND_FD BUDGET SIGNALS``
(``SIGNALS``: comma-separated numbers). It reads the parent's wake-up pipe
(``SIGNAL_FD``: the bytes the parent's C-level signal handler writes, without
the GIL) and copies every byte to ``RELAY_FD``, which the parent's coordinator
reads (its first byte, a zero, says it runs: until then the parent reads the
wake-up pipe itself too). The first byte of one of ``SIGNALS`` starts its own
deadline, ``BUDGET`` seconds later, and the relay tells the coordinator when
that was (:data:`ARRIVAL`), so that its deadline, read late while it waited
for the GIL, is the same; the parent moves it with commands on
``COMMAND_FD`` (one line each: ``arm <CLOCK_MONOTONIC seconds>``, which may
only bring it closer, ``disarm`` and ``quit``). At the deadline it sends the
parent SIGKILL: no GIL, no Python code of the parent's is needed for that. It
leaves when the command pipe ends, on ``quit``, or when the parent is gone.
"""

from __future__ import annotations

import os
import select
import sys
import time

SIGKILL = 9

#: Marks the 8 bytes after it on the relay pipe: the ``time.monotonic_ns()``
#: at which the sentinel read the signal that started its deadline (a signal
#: number is at most 64; a wake-up byte is 0).
ARRIVAL = b"\xfe"

#: Read at most this much at once, so that with a frame each relayed write
#: stays within PIPE_BUF (4096): written whole or not at all.
READ_SIZE = 4000

#: How often the parent's existence is checked when nothing else happens.
PARENT_CHECK = 0.5


def main(argv: list[str]) -> int:
    """Run until told to quit, the parent is gone, or the parent is ended at its deadline."""
    # SIGINT, SIGTERM, SIGHUP and SIGQUIT stay blocked, as the parent started
    # it: a Ctrl-C to the terminal's group is the parent's. (No `signal`
    # module: it imports enum, a third of the start-up time.)
    parent, sig_fd, relay_fd, cmd_fd = (int(a) for a in argv[1:5])
    budget = float(argv[5])
    watched = frozenset(int(s) for s in argv[6].split(",") if s)
    os.set_blocking(relay_fd, False)
    try:  # noqa: SIM105 - the hello (a wake-up byte): the parent reads the relay only from now on
        os.write(relay_fd, b"\0")
    except OSError:
        pass
    deadline: float | None = None
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
                    seen = time.monotonic_ns()
                    deadline = seen / 1e9 + budget
                    # When the signal came, for the coordinator's deadline (it may
                    # read this late, waiting for the GIL): before the bytes.
                    data = ARRIVAL + seen.to_bytes(8, "little") + data
                try:  # noqa: SIM105 - no contextlib: it starts faster without
                    os.write(relay_fd, data)  # at most PIPE_BUF bytes: all or nothing
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
                    deadline = None
                elif word == b"arm":
                    at = float(value)
                    deadline = at if deadline is None else min(deadline, at)
        if deadline is not None and time.monotonic() >= deadline:
            if os.getppid() == parent:  # still ours: the pid cannot have been reused
                os.kill(parent, SIGKILL)
            return 0


def _read(fd: int) -> bytes | None:
    """What is in the pipe (``b""``: nothing after all), or None at its end.

    Until the parent has seen the hello it reads the wake-up pipe too, and may
    have taken the bytes ``select`` reported.
    """
    try:
        return os.read(fd, READ_SIZE) or None
    except BlockingIOError:
        return b""


if __name__ == "__main__":
    os._exit(main(sys.argv))  # nothing to flush or finalise: gone at once after "quit"
