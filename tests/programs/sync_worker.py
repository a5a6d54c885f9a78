"""A sync worker loop: jobs of 0.4 s in flight, three hooks, JSON events on stdout."""

import signal
import sys
import time

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)


@spotgrace.on_shutdown
def close_db() -> None:
    say("hook:close_db")


@spotgrace.on_shutdown
def flush_metrics() -> None:
    say("hook:flush_metrics")


@spotgrace.on_shutdown(order=-10, timeout=5)
async def deregister() -> None:
    say("hook:deregister")


before = signal.getsignal(signal.SIGTERM)
try:
    with spotgrace.graceful() as grace:
        n = 0
        while not grace.stopping:
            with grace.inflight():
                n += 1
                say(f"job-start {n}")
                if n == 1:
                    say("ready")
                time.sleep(0.4)
                say(f"job-done {n}")
finally:
    say(f"handlers-restored {signal.getsignal(signal.SIGTERM) == before}")
