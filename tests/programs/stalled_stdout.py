"""A hook writes 1 MB to stdout, which nobody reads: logging itself is stuck."""

import sys

import spotgrace


@spotgrace.on_shutdown
def chatty_hook() -> None:
    sys.stdout.write("x" * 1_000_000)
    sys.stdout.flush()


with spotgrace.graceful(stop_timeout=3, margin=0.5) as grace:
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    grace.request_shutdown()
