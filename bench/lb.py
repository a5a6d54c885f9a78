"""Behind a load balancer: plain servers vs spotgrace, a rolling restart under load.

    python bench/lb.py                    # 3 runs per variant, ALB timing 5 s x 2 and 10 s x 2
    python bench/lb.py --timing 5x2       # one timing only
    python bench/lb.py --quick            # 1 run, 1 s x 2 (a smoke run)
    python bench/lb.py --variant grace-uvicorn-workers-lifespan --variant plain-uvicorn-workers
                                          # only these rows
    python bench/lb.py --timing 10x2 --merge   # replace these rows in the last results, keep the rest

Two replicas behind HAProxy set up like an ALB target group (health check
``GET /readyz`` every INTER s, FALL failures mark a replica down, keep-alive
with ``http-reuse always``, ``retries 0``, no redispatch; ``bench/lb_harness.py``),
hey at 300 req/s (10 connections) on ``GET /work?ms=10``. 3 s in, replica 1
gets SIGTERM; once gone it is started again. Counted: every non-2xx answer and
every connection error hey saw. spotgrace replicas run with
``SPOTGRACE_DRAIN_DELAY = INTER x FALL + 1`` and ``SPOTGRACE_STOP_TIMEOUT=30``
(ECS's default), or 60 when the lame duck does not fit half of the 30 s
budget (spotgrace caps it there: 10 s x 2 needs 21 s); ``grace-asgi-delay0`` is spotgrace.asgi with its default
``drain_delay=0``, to show why the rule matters. Plain gunicorn runs with
``--graceful-timeout 30``.

Writes ``bench/results/lb.json``, the table between the ``lb-table`` markers
of ``docs/benchmarks-http.md`` and the plot ``docs/img/lb-errors.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lb_harness import Replica, lb_run  # noqa: E402
from bench.lb_variants import PLAIN, replica  # noqa: E402

ORDER = [name for pair in PLAIN.items() for name in (pair[1], pair[0])]  # plain, then grace
ORDER.insert(ORDER.index("grace-asgi") + 1, "grace-asgi-delay0")
STOP_TIMEOUT = 30.0
RATE, CONNECTIONS, PATH = 300, 10, "/work?ms=10"
SIGTERM_AT = 3.0


def stop_timeout_for(drain_delay: float) -> float:
    """ECS's default 30 s, or 60 s when the lame duck does not fit half of the budget."""
    margin = 3.0  # spotgrace's default margin for 30 s
    return STOP_TIMEOUT if drain_delay <= (STOP_TIMEOUT - margin) / 2 else 2 * STOP_TIMEOUT


def _replica(name: str, drain_delay: float) -> Replica:
    stop_timeout = stop_timeout_for(drain_delay)
    if name == "grace-asgi-delay0":
        return replica("grace-asgi", drain_delay=0, stop_timeout=stop_timeout)
    return replica(name, drain_delay=drain_delay, stop_timeout=stop_timeout)


async def bench(
    timings: list[tuple[float, int]], runs: int, variants: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for inter, fall in timings:
        drain_delay = inter * fall + 1
        duration = SIGTERM_AT + drain_delay + 8  # covers the exit and the restart
        for name in variants:
            for run in range(runs):
                t = time.monotonic()
                result = await lb_run(
                    _replica(name, drain_delay),
                    inter=inter,
                    fall=fall,
                    duration=duration,
                    sigterm_at=SIGTERM_AT,
                    concurrency=CONNECTIONS,
                    rate=RATE,
                    path=PATH,
                )
                row = {
                    "timing": f"{inter:g}x{fall}",
                    "variant": name,
                    "run": run + 1,
                    "drain_delay": 0
                    if name == "grace-asgi-delay0" or "plain" in name
                    else drain_delay,
                    "stop_timeout": stop_timeout_for(drain_delay),
                    "ok": result.ok,
                    "client_errors": result.client_errors,
                    "non_2xx": result.non_2xx,
                    "errors": result.errors,
                    "exit_code": result.exit_code,
                    "exit_seconds": round(result.exit_seconds, 2),
                }
                rows.append(row)
                print(
                    f"{row['timing']:5} {name:32} run {run + 1}: {result.summary()} "
                    f"({time.monotonic() - t:.0f} s)",
                    flush=True,
                )
    return rows


def _timing_key(timing: str) -> tuple[float, int]:
    inter, fall = timing.split("x")
    return float(inter), int(fall)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| timing (interval x threshold) | server | drain_delay | stop_timeout "
        "| client errors per run | exit code | SIGTERM -> gone (s, median) | 2xx per run (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for timing in sorted(dict.fromkeys(r["timing"] for r in rows), key=_timing_key):
        for name in ORDER:
            mine = [r for r in rows if r["timing"] == timing and r["variant"] == name]
            if not mine:
                continue
            errs = ", ".join(str(r["client_errors"]) for r in mine)
            codes = ", ".join(sorted({str(r["exit_code"]) for r in mine}))
            gone = statistics.median(r["exit_seconds"] for r in mine)
            ok = statistics.median(r["ok"] for r in mine)
            out.append(
                f"| {timing} s | {name} | {mine[0]['drain_delay']:g} s "
                f"| {mine[0].get('stop_timeout', STOP_TIMEOUT):g} s | {errs} | {codes} "
                f"| {gone:.1f} | {ok:.0f} |"
            )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings = sorted(dict.fromkeys(r["timing"] for r in rows), key=_timing_key)
    fig, axes = plt.subplots(1, len(timings), figsize=(6 * len(timings), 4.5), squeeze=False)
    for ax, timing in zip(axes[0], timings, strict=True):
        names = [n for n in ORDER if any(r["variant"] == n and r["timing"] == timing for r in rows)]
        for i, name in enumerate(names):
            errs = [
                r["client_errors"] for r in rows if r["variant"] == name and r["timing"] == timing
            ]
            color = "tab:green" if name.startswith("grace") and "delay0" not in name else "tab:red"
            ax.bar(i, statistics.mean(errs), color=color, alpha=0.6)
            ax.scatter([i] * len(errs), errs, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"health check {timing} s: client errors per SIGTERM")
        ax.set_ylabel("non-2xx + connection errors (per run)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def write_docs(rows: list[dict[str, Any]], runs: int) -> None:
    doc = ROOT / "docs" / "benchmarks-http.md"
    text = doc.read_text()
    begin, end = "<!-- lb-table:begin -->", "<!-- lb-table:end -->"
    body = (
        f"{begin}\n{table(rows)}\n\n"
        f"{runs} runs per row; {RATE} req/s, {CONNECTIONS} connections, `GET {PATH}`; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; made by `python bench/lb.py`.\n{end}"
    )
    if begin in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timing", action="append", help="INTERxFALL, e.g. 5x2 (repeatable)")
    parser.add_argument("--quick", action="store_true", help="1 run at 1x2, no docs written")
    parser.add_argument("--variant", action="append", choices=ORDER, help="only these (repeatable)")
    parser.add_argument(
        "--merge", action="store_true", help="keep the last results' other rows (lb.json)"
    )
    parser.add_argument(
        "--report", action="store_true", help="no run: the table and plot from lb.json"
    )
    args = parser.parse_args()
    if args.quick:
        timings, runs = [(1.0, 2)], 1
    else:
        raw = args.timing or ["5x2", "10x2"]
        timings = [(float(t.split("x")[0]), int(t.split("x")[1])) for t in raw]
        runs = args.runs
    out = ROOT / "bench" / "results"
    if args.report:
        rows = json.loads((out / "lb.json").read_text())
        print(table(rows))
        write_docs(rows, max(r["run"] for r in rows))
        plot(rows, ROOT / "docs" / "img" / "lb-errors.png")
        return
    rows = asyncio.run(bench(timings, runs, args.variant or ORDER))
    print(table(rows))
    out.mkdir(exist_ok=True)
    if args.merge and (out / "lb.json").exists():  # replace these rows in the last results
        new = {(r["timing"], r["variant"]) for r in rows}
        old = json.loads((out / "lb.json").read_text())
        rows = [r for r in old if (r["timing"], r["variant"]) not in new] + rows
    (out / "lb.json").write_text(json.dumps(rows, indent=1))
    if not args.quick:
        write_docs(rows, runs)
        plot(rows, ROOT / "docs" / "img" / "lb-errors.png")


if __name__ == "__main__":
    main()
