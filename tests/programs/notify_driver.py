"""Run the supervisor in-process and call ``Supervisor.notify`` from a thread.

Usage: notify_driver.py TRIGGER_FILE WITHIN -- CMD ARGS...

This is the seam an early-warning watcher plugs into: once TRIGGER_FILE
exists, a thread calls ``notify("spot interruption notice", within=WITHIN)``
(``none`` for no termination time), as a watcher does when it sees a notice.
It does not fake a metadata endpoint: it tests what the supervisor does with
a notice, whatever found it. stop_timeout is 30 s and margin 1 s.
"""

import os
import sys
import threading
import time

from spotgrace._cli._run import configure_logging
from spotgrace._core._config import resolve_options
from spotgrace._supervisor._supervisor import RunSettings, Supervisor

trigger, within_text = sys.argv[1], sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1 :]
within = None if within_text == "none" else float(within_text)

configure_logging("json")
supervisor = Supervisor(
    RunSettings(command=tuple(command), options=resolve_options(stop_timeout=30, margin=1))
)


def watcher() -> None:
    while not os.path.exists(trigger):
        time.sleep(0.02)
    supervisor.notify("spot interruption notice", within=within)


# Started by run() once the signals are blocked, so the thread inherits the
# mask and never takes a signal meant for the supervisor's own wait.
sys.exit(supervisor.run(before_spawn=threading.Thread(target=watcher, daemon=True).start))
