#!/usr/bin/env python3
"""Measure ``spotgrace run`` as PID 1 of a real PID namespace (needs root and unshare).

1. Zombies: a program leaves N orphaned grandchildren that exit 0.2 s later
   (tests/programs/orphans.py); how many zombies are left in /proc? Under
   ``spotgrace run``, and, as a control showing the count can be non-zero,
   under a PID 1 that waits only for its own child (``subprocess.call``).
2. Deadline overshoot: a program ignoring SIGTERM gets SIGTERM; the budget is
   stop_timeout 2 - margin 0.5 = 1.5 s. Over RUNS runs, how late is the SIGKILL
   (supervisor clock: kill sent - deadline), how late is the child reaped
   (child.exited elapsed - budget), and how late is the whole namespace gone
   as seen from outside (exit observed - SIGTERM sent - budget), and how
   much of that comes after the child was reaped (the supervisor's own
   interpreter exit, unshare, the namespace teardown)?

    python bench/supervisor.py [--runs 20] [--orphans 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
PY = sys.executable
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
CALL_ONLY_CHILD = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def zombies(pid1: list[str], orphans: int) -> str:
    """The orphans program's verdict line under the given PID 1."""
    cmd = [*UNSHARE, *pid1, PY, str(PROGRAMS / "orphans.py"), str(orphans), "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("zombies=")]
    return lines[-1] if lines else f"no verdict (exit {done.returncode}): {done.stderr[-300:]}"


def supervisor_pid(unshare: int) -> int:
    children = Path(f"/proc/{unshare}/task/{unshare}/children")
    while not (text := children.read_text().split()):
        time.sleep(0.005)
    return int(text[0])


def one_overshoot(budget: float) -> tuple[float, float, float]:
    cmd = [
        *UNSHARE,
        PY,
        "-m",
        "spotgrace",
        "run",
        "--stop-timeout",
        "2",
        "--margin",
        "0.5",
        "--",
        PY,
        str(PROGRAMS / "ignore_term.py"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the program did not start")
    sent = time.monotonic()
    os.kill(supervisor_pid(proc.pid), 15)
    code = proc.wait(30)
    gone = time.monotonic() - sent - budget
    events = [json.loads(x) for x in proc.stderr.read().splitlines() if x.startswith("{")]
    proc.stdout.close()
    proc.stderr.close()
    if code != 137:
        raise RuntimeError(f"expected exit 137, got {code}")
    kill = next(e for e in events if e["event"] == "shutdown.deadline_exceeded")
    exited = next(e for e in events if e["event"] == "child.exited")
    return kill["overshoot"], exited["elapsed"] - budget, gone


def describe(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"  {name:<38} min {ms[0]:7.2f}  median {statistics.median(ms):7.2f}  "
        f"p95 {p95:7.2f}  max {ms[-1]:7.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--orphans", type=int, default=50)
    args, _ = parser.parse_known_args()  # run_all.py passes its extras to every script
    if os.geteuid() != 0:
        print("skipped: needs root for a PID namespace (unshare --pid --mount-proc)")
        return 0
    print(f"zombies left by {args.orphans} orphans (after up to 3 s):")
    print(
        f"  spotgrace run as PID 1:          {zombies([PY, '-m', 'spotgrace', 'run', '--'], args.orphans)}"
    )
    print(
        f"  control, PID 1 waits child only: {zombies([PY, '-c', CALL_ONLY_CHILD], args.orphans)}"
    )
    budget = 1.5
    results = [one_overshoot(budget) for _ in range(args.runs)]
    print(f"deadline overshoot over {args.runs} runs (budget {budget} s after SIGTERM):")
    print(describe("SIGKILL sent after the deadline", [r[0] for r in results]))
    print(describe("child reaped after the deadline", [r[1] for r in results]))
    print(describe("namespace gone (seen from outside)", [r[2] for r in results]))
    print(describe("  of which: after the child was reaped", [r[2] - r[1] for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
