"""A program that ignores SIGTERM: only a SIGKILL ends it.

With ``--with-grandchild`` it first starts a grandchild (same process group)
that ignores SIGTERM too, and prints ``grandchild=<pid>``.
"""

import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--with-grandchild" in sys.argv:
    # SIG_IGN survives exec: the grandchild ignores SIGTERM as well.
    grandchild = subprocess.Popen(["sleep", "600"])
    print(f"grandchild={grandchild.pid}", flush=True)
print("ready", flush=True)
time.sleep(600)
