"""The sentinel: a tiny child process that ends this one at the deadline, GIL or not.

In-process, everything after a signal needs the GIL at least once: the
coordinator's thread must read the wake-up fd and arm the deadline. Thirty
CPU-bound threads, or a C call that holds the GIL, can keep it from running
for seconds. The sentinel (:mod:`._sentinel_main`, started when the block is
entered) reads the wake-up pipe beside the coordinator's thread: the C-level
handler writes the signal's byte without the GIL; whichever reads it first,
the sentinel starts the deadline from it (relaying the byte and when it came)
or the coordinator arms the sentinel with a command, as it does for every
notice. At the deadline (plus :data:`SENTINEL_LAG`, after the in-process
watchdog and backstop had their chance) it sends SIGKILL.

It is not started as PID 1 (a process cannot SIGKILL the init of its own PID
namespace: run under ``spotgrace run`` or ``docker run --init`` there), for a
frozen application, when ``SPOTGRACE_SENTINEL=0``, or when it cannot start
(``sentinel.failed``): the in-process watchdog and backstop remain. If it
dies (``sentinel.lost``), the coordinator's thread still reads the pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["SENTINEL_LAG", "SENTINEL_START_WAIT", "Sentinel", "sentinel_enabled", "sentinel_pids"]

#: The sentinel kills this long after the deadline: after the Python
#: watchdog (before it) and the faulthandler backstop (20 ms after it).
SENTINEL_LAG = 0.06

#: How long entering the block waits for the sentinel to be reading (it goes
#: on without that wait after this long; the sentinel still starts).
SENTINEL_START_WAIT = 1.0

_PROGRAM = Path(__file__).with_name("_sentinel_main.py")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

#: The process ids of this process's running sentinels.
_RUNNING: set[int] = set()


def sentinel_pids() -> frozenset[int]:
    """The process ids of this process's running sentinels (not to be killed with the tree)."""
    return frozenset(_RUNNING)


#: Handles a forked child inherited: kept, so that no ``Popen.__del__`` warns of them.
_FORKED_AWAY: list[subprocess.Popen[bytes]] = []


def sentinel_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a sentinel may be started here (see the module docstring)."""
    if environ.get("SPOTGRACE_SENTINEL", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if os.getpid() == 1 or getattr(sys, "frozen", False) or not sys.executable:
        return False
    return _PROGRAM.is_file()


class Sentinel:
    """The handle on one sentinel process (see the module docstring)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._cmd = -1
        self.failed: str | None = None

    @property
    def running(self) -> bool:
        """Whether a sentinel was started and has not been told to quit."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        """The sentinel's process id, while it runs."""
        return None if self._proc is None else self._proc.pid

    def spawn(self, *, signal_fd: int, budget: float, signals: Iterable[int]) -> int:
        """Start it on the wake-up pipe's read end; returns the fd to read relayed bytes from.

        Returns -1 (and sets :attr:`failed`) when it could not start; the
        caller then reads ``signal_fd`` itself.
        """
        relay_r, relay_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
        argv = [
            sys.executable,
            "-I",
            "-S",
            str(_PROGRAM),
            str(os.getpid()),
            str(signal_fd),
            str(relay_w),
            str(cmd_r),
            repr(budget + SENTINEL_LAG),
            ",".join(str(int(s)) for s in signals),
        ]
        # Blocked in the sentinel for good (the mask survives the exec): a
        # Ctrl-C or SIGTERM meant for the app must not end it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(signal_fd, relay_w, cmd_r),
                process_group=0,  # a Ctrl-C to the terminal's group is not for it
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.failed = repr(exc)
            for fd in (relay_r, relay_w, cmd_r, cmd_w):
                os.close(fd)
            return -1
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(relay_w)
        os.close(cmd_r)
        os.set_blocking(cmd_w, False)
        self._cmd = cmd_w
        _RUNNING.add(self._proc.pid)
        return relay_r

    def _send(self, line: str) -> None:
        if self._cmd >= 0:
            with contextlib.suppress(OSError):  # gone, or (never in practice) full
                os.write(self._cmd, line.encode() + b"\n")

    def arm(self, deadline: float) -> None:
        """End the process at ``deadline + SENTINEL_LAG`` (``time.monotonic()`` scale) at the latest."""
        self._send(f"arm {deadline + SENTINEL_LAG!r}")

    def disarm(self) -> None:
        """Cancel its deadline (it starts one again at the next watched signal)."""
        self._send("disarm")

    def close(self) -> None:
        """Tell it to quit, end it if it has not yet, and reap it.

        Not waited for: a sentinel whose interpreter is still starting (tens of
        milliseconds, more on a busy machine) would hold the block's exit that
        long, and one not reaped is left behind. Nothing of it is needed any
        more, so it is killed; it is our unreaped child, so its pid is still its own.
        """
        proc, self._proc = self._proc, None  # not `running` from here: its end is expected
        self._send("quit")
        cmd, self._cmd = self._cmd, -1
        if cmd >= 0:
            with contextlib.suppress(OSError):
                os.close(cmd)
        if proc is not None:
            _RUNNING.discard(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                if proc.poll() is None:
                    proc.kill()
                proc.wait(1.0)  # SIGKILL ends even a stopped process at once

    def after_fork(self) -> None:
        """In a forked child: the sentinel is the parent's; keep nothing of it."""
        cmd, self._cmd = self._cmd, -1
        _RUNNING.clear()
        if self._proc is not None:  # not ours to wait for, nor to warn about
            _FORKED_AWAY.append(self._proc)
            self._proc = None
        if cmd >= 0:
            with contextlib.suppress(OSError):
                os.close(cmd)
