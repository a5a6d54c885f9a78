"""Deadline under stress (issue 10): every hostile case, N runs each.

    python bench/deadline_stress.py            # 20 runs per case
    python bench/deadline_stress.py --quick    # 5 runs per case
    python bench/deadline_stress.py --readiness 200   # only the readiness reaction, 200 samples

Each run starts ``tests/programs/deadline_case.py <case>`` (or ``spotgrace
run`` for the supervisor case), waits for ``ready``, sends SIGTERM and times
the exit from the parent (``waitpid``). stop_timeout 3 s, margin 0.5 s: the
internal deadline is 2.5 s after SIGTERM. Columns: worst exit time, runs past
stop_timeout, worst overshoot of the internal deadline (negative: before it),
exit codes seen; for the C-call case also the readiness reaction (SIGTERM to
``grace.ready`` turning False, read by a thread of the app while the main
thread waits in sqlite3's C code), p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from waiting import wait_exactly

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "programs" / "deadline_case.py"
PY = sys.executable
STOP, MARGIN = 3.0, 0.5
DEADLINE = STOP - MARGIN

#: (label, argv after the program, how the SIGTERM is given)
CASES: list[tuple[str, list[str]]] = [
    ("main thread in C (sqlite lock wait), body stuck", ["sqlite"]),
    ("hook holds the GIL in C (PyDLL sleep)", ["gil-hook"]),
    ("hook holds the GIL + 30 CPU threads", ["gil-hook", "30"]),
    ("main thread holds the GIL in C", ["gil-body"]),
    ("GIL held in C before SIGTERM (sentinel)", ["gil-first"]),
    ("hook hangs + 30 CPU-bound threads", ["spin-hook", "30"]),
    ("hook hangs + 50 CPU-bound threads", ["spin-hook", "50"]),
    ("RLIMIT_NPROC exhausted, body stuck", ["nproc"]),
    ("stdout a full pipe (structlog default)", ["full-pipe", "hang"]),
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    env.update(PYTHONUNBUFFERED="1", CASE_STOP_TIMEOUT=str(STOP), CASE_MARGIN=str(MARGIN))
    return env


def one_run(args: list[str]) -> tuple[float, int, float | None]:
    """(seconds from SIGTERM to exit, exit code, readiness reaction or None)."""
    full_pipe = args[0] == "full-pipe"
    proc = subprocess.Popen(
        [PY, str(PROGRAM), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if full_pipe else subprocess.STDOUT,
        cwd=ROOT,
        env=_env(),
        text=True,
    )
    ready_stream = proc.stderr if full_pipe else proc.stdout
    assert ready_stream is not None
    for line in ready_stream:
        if line.startswith("ready"):
            break
    time.sleep(0.3 if args[0] != "gil-body" else 0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = wait_exactly(proc, STOP + 30)
    took = time.monotonic() - sent
    reaction = None
    if not full_pipe and proc.stdout is not None:
        for line in proc.stdout.read().splitlines():
            if line.startswith("notready"):
                reaction = float(line.split()[1]) - sent
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return took, code, reaction


def supervisor_run() -> tuple[float, int, float | None]:
    """spotgrace run with a full, unread stderr; the child ignores SIGTERM."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    child = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    child += "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen(
        [
            *(PY, "-m", "spotgrace", "run", "--stop-timeout", str(STOP)),
            *("--margin", str(MARGIN), "--", PY, "-c", child),
        ],
        stdout=subprocess.PIPE,
        stderr=write_end,
        cwd=ROOT,
        env=_env(),
        text=True,
    )
    os.close(write_end)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = wait_exactly(proc, STOP + 30)
    took = time.monotonic() - sent
    proc.stdout.close()
    os.close(read_end)
    return took, code, None


def readiness_sample() -> float:
    """One SIGTERM -> ``grace.ready`` False while the main thread waits in sqlite3's C code.

    The process is SIGKILLed as soon as the reaction is read (no need to wait
    for its deadline), so many samples take little time.
    """
    proc = subprocess.Popen(
        [PY, str(PROGRAM), "sqlite"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=_env(),
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("ready"):
                break
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            if line.startswith("notready"):
                return float(line.split()[1]) - sent
        raise RuntimeError("no notready line")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 runs per case")
    parser.add_argument(
        "--plot",
        default=str(ROOT / "docs" / "img" / "deadline-stress.png"),
        help="PNG to write ('' for none)",
    )
    parser.add_argument(
        "--readiness", type=int, default=0, help="only the readiness reaction, this many samples"
    )
    opts, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    if opts.readiness:
        got = [readiness_sample() for _ in range(opts.readiness)]
        print(
            f"readiness reaction, main thread in sqlite3's C code: n={len(got)} "
            f"p50 {statistics.median(got) * 1000:.2f} ms, p99 {pct(got, 0.99) * 1000:.2f} ms, "
            f"max {max(got) * 1000:.2f} ms"
        )
        return
    runs = 5 if opts.quick else opts.runs
    print(f"deadline under stress: {runs} runs per case; stop_timeout {STOP} s, margin {MARGIN} s")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    header = "| case | worst exit | past stop_timeout | worst overshoot | exit codes |"
    print(header)
    print("|---|---|---|---|---|")
    reactions: list[float] = []
    exits: dict[str, list[float]] = {}
    all_cases = [(label, args) for label, args in CASES]
    all_cases.append(("`spotgrace run`, stderr a full pipe, child ignores SIGTERM", []))
    for label, args in all_cases:
        results = [one_run(args) if args else supervisor_run() for _ in range(runs)]
        times = [t for t, _, _ in results]
        exits[label.replace("`", "")] = times
        codes = Counter(c for _, c, _ in results)
        reactions += [r for _, _, r in results if r is not None]
        past = sum(t >= STOP for t in times)
        over = max(times) - DEADLINE
        shown = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
        print(
            f"| {label} | {max(times):.3f} s | {past}/{runs} | {over * 1000:+.0f} ms | {shown} |",
            flush=True,
        )
    out = ROOT / "bench" / "results" / "deadline_stress.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "exits": exits, "reactions": reactions}, indent=1))
    if opts.plot:
        from plots import Panel, box_panels

        box_panels(
            [
                Panel(
                    f"stop_timeout {STOP:g} s, margin {MARGIN:g} s",
                    "SIGTERM -> exit (s)",
                    exits,
                    {"deadline": DEADLINE, "stop_timeout": STOP},
                )
            ],
            Path(opts.plot),
            f"bench/deadline_stress.py, {runs} runs per case",
        )
        print(f"\nwrote {out} and {opts.plot}")
    if reactions:
        print(
            f"\nreadiness reaction, main thread in C: n={len(reactions)} "
            f"p50 {statistics.median(reactions) * 1000:.2f} ms, "
            f"p99 {pct(reactions, 0.99) * 1000:.2f} ms, max {max(reactions) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
