"""SIGINT is not spotgrace's here: a Ctrl-C during the cleanup interrupts the block's exit."""

import os
import signal
import threading
import time

from _out import say

import spotgrace


def slow_hook() -> None:
    time.sleep(1)


try:
    with spotgrace.graceful(
        stop_timeout=4, margin=0.5, signals=["SIGTERM"], exit_code="return"
    ) as grace:
        grace.on_shutdown(slow_hook)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
except KeyboardInterrupt:
    say(
        f"interrupted; SIGTERM handler restored: {signal.getsignal(signal.SIGTERM) is signal.SIG_DFL}"
    )
with spotgrace.graceful(stop_timeout=4, exit_code="return"):
    say("a new block could be entered")
time.sleep(5)  # past the first block's deadline: its watchdog must have stood down
say("still alive")
