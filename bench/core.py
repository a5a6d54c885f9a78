"""Core benchmarks (issue 2): SIGTERM -> exit, deadline adherence, import time.

    python bench/core.py [--runs 20]

Every number is wall-clock on this machine, measured here, in one run, side by
side with the baselines; read the spread (p95/max), not only the median.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from waiting import wait_exactly

HERE = Path(__file__).parent
APPS = HERE / "apps"
ROOT = HERE.parent
PY = sys.executable


def start_ready(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"ready" not in line:
        proc.kill()
        raise RuntimeError(f"{args} did not become ready: {line!r}")
    return proc


def sigterm_to_exit(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    proc = start_ready(args, env)
    time.sleep(0.05)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code = wait_exactly(proc, 60)
    return time.perf_counter() - sent, code


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return (
        f"p50 {statistics.median(xs) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   "
        f"max {xs[-1] * 1000:7.1f} ms"
    )


def bench_exit(runs: int) -> dict[str, list[float]]:
    print(f"\n## SIGTERM -> process exit, idle app ({runs} runs each)\n")
    base = [wall([PY, "-c", "pass"]) for _ in range(runs)]
    print(f"{'python -c pass (whole run)':34} {summary(base)}")
    times = {"python -c pass (whole run)": [t * 1000 for t in base]}
    for label, app in [
        ("plain asyncio (add_signal_handler)", "idle_asyncio.py"),
        ("aiorun", "idle_aiorun.py"),
        ("spotgrace, sync with-block", "idle_spotgrace_sync.py"),
        ("spotgrace, async with-block", "idle_spotgrace_async.py"),
    ]:
        results = [sigterm_to_exit([PY, str(APPS / app)]) for _ in range(runs)]
        codes = sorted({c for _, c in results})
        print(f"{label:34} {summary([t for t, _ in results])}   exit codes {codes}")
        times[label] = [t * 1000 for t, _ in results]
    return times


def bench_deadline(runs: int) -> tuple[dict[str, list[float]], float, float]:
    stop_timeout, margin = 3.0, 0.5
    target = stop_timeout - margin
    print(
        f"\n## Deadline adherence: a hook that never returns, stop_timeout={stop_timeout:g} s "
        f"(deadline t0 + {target:g} s), {runs} runs each\n"
    )
    env = {"SPOTGRACE_STOP_TIMEOUT": str(stop_timeout), "SPOTGRACE_MARGIN": str(margin)}
    times: dict[str, list[float]] = {}
    for mode, what in [
        ("sync", "sync hook blocked forever"),
        ("block-loop", "async hook blocking the loop"),
    ]:
        results = [
            sigterm_to_exit([PY, str(APPS / "hanging_hook.py"), mode], env) for _ in range(runs)
        ]
        over = [t - target for t, _ in results]
        codes = sorted({c for _, c in results})
        past = sum(t >= stop_timeout for t, _ in results)
        print(
            f"{what:30} exit after {summary([t for t, _ in results])}; "
            f"worst overshoot past the deadline {max(over) * 1000:+.1f} ms; "
            f"past stop_timeout: {past}/{runs}; exit codes {codes}"
        )
        times[what] = [t for t, _ in results]
    return times, target, stop_timeout


def bench_import(runs: int) -> None:
    print(f"\n## Import time ({runs} runs each, whole interpreter run)\n")
    base = [wall([PY, "-c", "pass"]) for _ in range(runs)]
    rows = {
        "python -c pass": base,
        "import asyncio, structlog": [
            wall([PY, "-c", "import asyncio, structlog"]) for _ in range(runs)
        ],
        "import spotgrace": [wall([PY, "-c", "import spotgrace"]) for _ in range(runs)],
    }
    b = statistics.median(base)
    for label, xs in rows.items():
        print(
            f"{label:28} {summary(xs)}   (+{(statistics.median(xs) - b) * 1000:5.1f} ms over bare)"
        )
    print("\n-X importtime, cumulative, median of the runs (less sensitive to machine load):\n")
    for label, stmt, top in [
        ("asyncio + structlog", "import asyncio, structlog", ("asyncio", "structlog")),
        ("spotgrace (all it imports)", "import spotgrace", ("spotgrace",)),
    ]:
        totals = [importtime(stmt, top) for _ in range(runs)]
        print(f"{label:28} {statistics.median(totals) / 1000:7.1f} ms")


def importtime(stmt: str, top: tuple[str, ...]) -> int:
    """Cumulative microseconds of the top-level modules in ``stmt`` (-X importtime)."""
    out = subprocess.run(
        [PY, "-X", "importtime", "-c", stmt], capture_output=True, text=True, check=True
    ).stderr
    total = 0
    for line in out.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in top:
            total += int(parts[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--plot", default=str(ROOT / "docs" / "img" / "core.png"), help="PNG to write ('' for none)"
    )
    args, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    print(f"# spotgrace core benchmarks  (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    exits = bench_exit(args.runs)
    deadlines, target, stop_timeout = bench_deadline(args.runs)
    bench_import(args.runs)
    if args.plot:
        from plots import Panel, box_panels

        box_panels(
            [
                Panel("SIGTERM -> exit, idle app", "ms", exits),
                Panel(
                    "A hook that never returns (stop_timeout 3 s, margin 0.5 s)",
                    "SIGTERM -> exit (s)",
                    deadlines,
                    {"deadline": target, "stop_timeout": stop_timeout},
                ),
            ],
            Path(args.plot),
            f"bench/core.py, {args.runs} runs each",
        )
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
