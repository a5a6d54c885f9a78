"""Run every benchmark, one after another: `python3 scripts/dev.py bench`.

Each script prints its own side-by-side table; this only runs them in turn and
says which failed. Arguments after `--` go to every script (e.g. `--runs 5`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

#: The benchmark scripts, in the order they run.
SCRIPTS = [
    "core.py",
    "deadline_stress.py",
    "zero_drop.py",
    "middleware_cost.py",
    "overhead.py",
    "poller_cpu.py",
    "detect_latency.py",
    "checkpoint_bench.py",
    "supervisor.py",
]


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for name in SCRIPTS:
        print(f"\n======== bench/{name} ========", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *extra], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
