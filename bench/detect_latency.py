"""Early-warning benchmark: detection latency and poller CPU.

    .venv/bin/python bench/detect_latency.py                 # both parts
    .venv/bin/python bench/detect_latency.py --runs 20 --interval 0.25 --cpu-seconds 60

1. Detection latency: the fake endpoints (127.0.0.1) flip to "interrupted" at
   a random moment; latency = from that moment (``FakeEndpoints.interrupted_at``,
   monotonic) to the moment shutdown starts (``grace.notice.t0``, the same
   clock), through ``spotgrace.graceful(watch=["ecs", "ec2"])`` in a sync app
   (watcher in a daemon thread). Goal: at most interval + 100 ms.
2. Poller CPU: a child process runs ``graceful(watch=...)`` at the default
   interval (5 s) against a fake server in *this* process, for
   ``--cpu-seconds``, once per source set (``ecs``, ``ec2``, ``ecs,ec2``);
   its CPU time (getrusage user+sys, from after start-up to the end) minus
   that of the same child with ``watch="off"``, divided by the wall time, is
   the poller's share of one core; x 3600 = CPU-seconds per hour. Another
   child polls every 0.05 s for more resolution: CPU per poll cycle x 720
   cycles = the per-hour cost at 5 s.

Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

from spotgrace.testing import FakeEndpoints


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def latency_runs(runs: int, interval: float) -> list[float]:
    import spotgrace

    out: list[float] = []
    with FakeEndpoints() as fake:
        os.environ.update(fake.env())
        for _ in range(runs):
            fake.reset()
            with spotgrace.graceful(
                watch=["ecs", "ec2"],
                watch_interval=interval,
                signals=(),
                stop_timeout=30,
                exit_code="return",  # keep this process (and its watchdog) for the next run
            ) as grace:
                time.sleep(random.uniform(0.5, 0.5 + interval))  # a random phase
                fake.interrupt()
                if not grace.wait(timeout=interval + 10):
                    raise SystemExit("no notice detected")
                notice = grace.notice
                assert notice is not None
                flipped = fake.interrupted_at
                assert flipped is not None
                out.append(notice.t0 - flipped)
    return out


def cpu_child(mode: str, interval: float, seconds: float) -> None:
    """Run in a child process: report CPU seconds over ``seconds`` of wall time."""
    import spotgrace

    with spotgrace.graceful(watch=mode, watch_interval=interval, signals=()) as grace:
        time.sleep(1.0)  # let start-up finish before measuring
        cpu0, wall0 = _cpu(), time.monotonic()
        grace.wait(timeout=seconds)
        cpu1, wall1 = _cpu(), time.monotonic()
        grace.request_shutdown("benchmark over")
    print(json.dumps({"cpu": cpu1 - cpu0, "wall": wall1 - wall0}))


def run_child(fake: FakeEndpoints, mode: str, interval: float, seconds: float) -> dict[str, float]:
    env = {**os.environ, **fake.env()}
    cmd = [sys.executable, __file__, "--cpu-child", mode, "--interval", str(interval)]
    cmd += ["--cpu-seconds", str(seconds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.25, help="latency runs' interval")
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--cpu-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_child:
        cpu_child(args.cpu_child, args.interval, args.cpu_seconds)
        return
    # The benchmark's own log lines would only add noise.
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    if not args.skip_latency:
        lat = latency_runs(args.runs, args.interval)
        ms = sorted(x * 1000 for x in lat)
        goal = args.interval * 1000 + 100
        print(f"detection latency, {len(ms)} runs, interval {args.interval * 1000:.0f} ms:")
        print(
            f"  min {ms[0]:.1f}  median {statistics.median(ms):.1f}  "
            f"p95 {ms[int(0.95 * (len(ms) - 1))]:.1f}  max {ms[-1]:.1f} ms"
        )
        print(f"  goal <= {goal:.0f} ms: {'met' if ms[-1] <= goal else 'NOT met'} (max)")
    if not args.skip_cpu:
        with FakeEndpoints() as fake:
            results: dict[str, dict[str, float]] = {}
            cycles: dict[str, int] = {}
            runs = [("off", 5.0, args.cpu_seconds)]
            runs += [(spec, 5.0, args.cpu_seconds) for spec in ("ecs", "ec2", "ecs,ec2")]
            runs += [("ecs,ec2@fast", 0.05, min(args.cpu_seconds, 20.0))]
            for name, interval, secs in runs:  # one after the other: no competition
                before = len(fake.requests("spot")) + len(fake.requests("task"))
                results[name] = run_child(fake, name.split("@")[0], interval, secs)
                cycles[name] = len(fake.requests("spot")) + len(fake.requests("task")) - before
        idle = results["off"]
        idle_rate = idle["cpu"] / idle["wall"]
        sniffio = importlib.util.find_spec("sniffio") is not None
        print(
            f"poller CPU at the default 5 s interval ({'with' if sniffio else 'without'} sniffio):"
        )
        print(f"  no watch: {idle['cpu'] * 1000:.1f} ms CPU in {idle['wall']:.0f} s")
        for spec in ("ecs", "ec2", "ecs,ec2"):
            r = results[spec]
            per_s = max(0.0, r["cpu"] / r["wall"] - idle_rate)
            print(
                f"  watch={spec:<8} {r['cpu'] * 1000:6.1f} ms CPU in {r['wall']:.0f} s "
                f"({cycles[spec]} polls) => {per_s * 3600:.2f} CPU-s/hour "
                f"= {per_s * 100:.4f}% of one core"
            )
        fast = results["ecs,ec2@fast"]
        n = max(1, cycles["ecs,ec2@fast"] // 2)
        per_cycle = max(0.0, fast["cpu"] - idle_rate * fast["wall"]) / n
        print(
            f"  cross-check: watch=ecs,ec2 every 0.05 s for {fast['wall']:.0f} s, ~{n} cycles: "
            f"{per_cycle * 1000:.2f} ms CPU per cycle; x 720 cycles/h at 5 s = "
            f"{per_cycle * 720:.2f} CPU-s/hour = {per_cycle * 720 / 36:.4f}% of one core"
        )


if __name__ == "__main__":
    main()
