"""An idle app: sync body waits for the shutdown; for PID 1, escalation and exit codes."""

import sys

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)


@spotgrace.on_shutdown
def slow_hook() -> None:
    import time

    say("hook:slow_hook")
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)


with spotgrace.graceful() as grace:
    say("ready")
    grace.wait()
