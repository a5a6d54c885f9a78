"""spotgrace's own threads: daemons that never take the process's signals."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

__all__ = ["start_daemon"]

# Signals the kernel should deliver to the main thread, where Python runs
# handlers, rather than to one of our threads blocked in a wait.
_BLOCKED = frozenset(
    {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
)


def start_daemon(
    target: Callable[[], None], *, name: str, block_signals: bool = True
) -> threading.Thread:
    """Start ``target`` in a daemon thread, by default with the stop signals blocked.

    Threads that run user code (hooks, the sequence's loop) pass
    ``block_signals=False``: a blocked mask is inherited by the processes they
    start, which could then not be stopped with SIGTERM.
    """

    def run() -> None:
        if block_signals:
            signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
