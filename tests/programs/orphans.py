"""Leave N orphaned grandchildren behind, then count the zombies they become.

Each orphan is double-forked, so it is re-parented to the nearest subreaper
(the supervisor, whether it is PID 1 or a ``PR_SET_CHILD_SUBREAPER``), and
exits 0.2 s later. If nobody reaps it, it stays a zombie (state Z) in /proc.
The program polls /proc for up to LIMIT seconds until none of the orphans is
left alive or as a zombie, then prints ``zombies=K alive=L orphans=N`` and exits 0.
"""

import os
import sys
import time
from pathlib import Path

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
LIMIT = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0


def orphan() -> None:
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:  # the grandchild: orphaned as soon as its parent exits
            time.sleep(0.2)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)


def adopted_by_reaper(reaper: int) -> tuple[int, int]:
    """(zombies, alive) among the processes whose parent is the reaper, except us."""
    zombies = alive = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(text.split(" ", 1)[0])
        fields = text.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if ppid != reaper or pid == os.getpid():
            continue
        if state == "Z":
            zombies += 1
        else:
            alive += 1
    return zombies, alive


reaper = os.getppid()
for _ in range(N):
    orphan()
print(f"left {N} orphans to pid {reaper}", flush=True)
end = time.monotonic() + LIMIT
time.sleep(0.3)
while True:
    zombies, alive = adopted_by_reaper(reaper)
    if (zombies == 0 and alive == 0) or time.monotonic() > end:
        break
    time.sleep(0.05)
print(f"zombies={zombies} alive={alive} orphans={N}", flush=True)
