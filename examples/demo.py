"""The README demo: a worker survives a rehearsed ECS/Fargate Spot interruption.

    python3 scripts/dev.py demo
    # is the same as
    spotgrace simulate --interrupt-after 3 --stop-timeout 10 -- python examples/worker_app.py

``spotgrace simulate`` starts fake ECS/EC2 metadata endpoints on 127.0.0.1,
runs the worker, flips the task metadata to STOPPED, sends SIGTERM like ECS
does, would SIGKILL at the stop timeout like ECS does, and prints the
timeline of the worker's shutdown with a verdict. Extra arguments are passed
to ``spotgrace simulate`` (e.g. ``--watch --warning 2`` to see the early
warning fire before the SIGTERM).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    simulate = [sys.executable, "-m", "spotgrace", "simulate"]
    options = ["--interrupt-after", "3", "--stop-timeout", "10", *sys.argv[1:]]
    app = [sys.executable, str(HERE / "worker_app.py")]
    sys.exit(subprocess.run([*simulate, *options, "--", *app], check=False).returncode)
