"""Review cases for issue 10's deadline work: argv[1] picks one.

``fork-armed``: after the notice (the GIL-free backstop is armed), the body
forks twice, as a pre-fork server replacing a worker during the drain would:
one child enters its own ``graceful()`` and is sent SIGTERM, the other ends
with a normal interpreter exit. Each must be gone within a few seconds.

``stdlib-full-pipe``: stdout is a full pipe nobody reads and the app logs
through the standard library there; the event writer is then stuck inside that
handler, holding its lock. The shutdown itself is clean.

``enter-race``: a SIGTERM whose Python-level handler runs while the block is
being entered, after the handlers are installed and before the wake-up channel
exists (the signal is sent from that point, so the timing is exact).

``kick-masked``: ``interrupt=True`` while the body blocks SIGINT for a moment
(a C library's critical section): the repeated kicks pile up undelivered. The
body then ends on the interrupt and a hook hangs; the test's Ctrl-C (SIGINT)
must escalate at once.
"""

import logging
import os
import signal
import sys
import threading
import time

from _out import say

import spotgrace

case = sys.argv[1]


def wait_child(pid: int, limit: float) -> str:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return str(os.waitstatus_to_exitcode(status))
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


if case == "fork-armed":
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=12, margin=1, drain_delay=0) as grace:
        say("ready")
        grace.wait()  # the notice: the backstop is armed now
        own = os.fork()
        if own == 0:
            with spotgrace.graceful(stop_timeout=2, margin=0.5) as child:
                os.kill(os.getpid(), signal.SIGTERM)
                child.wait()
            os._exit(0)
        plain = os.fork()
        if plain == 0:
            sys.exit(0)  # a normal interpreter exit
        say(f"child-own-graceful:{wait_child(own, 5)}")
        say(f"child-plain-exit:{wait_child(plain, 3)}")

elif case == "stdlib-full-pipe":
    os.set_blocking(1, False)
    try:
        while True:
            os.write(1, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(1, True)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO)

    @spotgrace.on_shutdown
    def hook() -> None:
        sys.stderr.write("hook-ran\n")
        sys.stderr.flush()

    with spotgrace.graceful(stop_timeout=3, margin=0.5) as grace:
        sys.stderr.write("ready\n")
        sys.stderr.flush()
        grace.wait()

elif case == "enter-race":
    from spotgrace._core import _coordinator

    class SignalledChannel(_coordinator.WakeupChannel):
        def __init__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before __init__ returns
            super().__init__()

    _coordinator.WakeupChannel = SignalledChannel  # type: ignore[misc]
    spotgrace.configure_json_logging(stream=sys.stdout)
    started = time.monotonic()
    with spotgrace.graceful(stop_timeout=10, margin=1, exit_code="return") as grace:
        seen = grace.wait(timeout=6)
        say(f"stopping-seen:{seen} after {time.monotonic() - started:.2f}s")

elif case == "kick-masked":

    @spotgrace.on_shutdown
    def hang() -> None:
        say("hook")
        threading.Event().wait()

    with spotgrace.graceful(stop_timeout=8, margin=0.5, interrupt=True):
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            say("ready")
            time.sleep(1.5)  # the SIGTERM comes now: 30 kicks while SIGINT is blocked
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            time.sleep(10)
        except spotgrace.ShutdownInterrupt:
            pass
