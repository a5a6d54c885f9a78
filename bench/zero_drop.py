"""HTTP benchmark: plain aiohttp / uvicorn vs spotgrace.aiohttp / spotgrace.asgi.

    python bench/zero_drop.py             # the full run (about 10 minutes on 2 cores)
    python bench/zero_drop.py --quick     # a smoke run (under a minute)

Four measurements, every server a real subprocess on 127.0.0.1:

zero drop  a raw HTTP/1.1 keep-alive client (``bench/loadclient.py``) with 40
           connections sends ``GET /work?ms=N`` (N in 50..400) back to back;
           SIGTERM goes to the server 1.5 s in. Each request ends as ok / 503 /
           refused (at connect) / dropped (written, no complete response).
reaction   SIGTERM -> the first ``/readyz`` answered 503, probing back to back
           on a keep-alive connection (spotgrace servers only: the plain ones
           have no readiness probe).
overhead   requests/s of ``GET /hello`` through spotgrace vs the plain server,
           same client, rounds alternating so that machine noise hits both.
exit       the last complete response -> the process is gone (from the
           zero-drop runs).

Prints markdown tables and writes them with the raw numbers to
``bench/results/http.md`` and ``bench/results/http.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Run, free_port, sigterm_under_load, start_server  # noqa: E402
from bench.loadclient import read_response, request_bytes, run_load  # noqa: E402

SERVERS = ROOT / "bench" / "servers.py"
PLAIN = {"grace-aiohttp": "plain-aiohttp", "grace-asgi": "plain-uvicorn"}
KINDS = ("plain-aiohttp", "plain-uvicorn", "grace-aiohttp", "grace-asgi")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def zero_drop(kind: str, runs: int) -> list[Run]:
    out = []
    for seed in range(runs):
        run = await sigterm_under_load([str(SERVERS), kind, "{port}"], seed=seed)
        d = run.load.as_dict()
        print(
            f"  {kind:14} run {seed + 1:2}/{runs}: {d} exit={run.exit_code} "
            f"last->exit={run.exit_after_last_response * 1000:.0f} ms",
            flush=True,
        )
        out.append(run)
    return out


def _teardown_ms(run: Run) -> float | None:
    """Milliseconds from the ``shutdown.finished`` event to the process being gone.

    The event's ``elapsed`` counts from the notice, which follows the SIGTERM
    within a few ms; so this slightly overstates the teardown.
    """
    for line in run.output.splitlines():
        if "shutdown.finished" in line and (found := re.search(r"elapsed=([0-9.]+)", line)):
            return (run.exited_at - run.sigterm_at - float(found.group(1))) * 1000
    return None


async def reaction(kind: str, runs: int, gap: float) -> list[float]:
    """Seconds from SIGTERM to the first 503 from /readyz, one server per run.

    The probe is sent every ``gap`` seconds (0: back to back, which keeps the
    server's event loop busy all the time) on one keep-alive connection.
    """
    out = []
    for _ in range(runs):
        port = free_port()
        server = await start_server([str(SERVERS), kind, str(port)], port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_bytes("/readyz"))
            first = await read_response(reader)
            assert first.status == 200, first
            sent = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            while True:
                if gap:
                    await asyncio.sleep(gap)
                writer.write(request_bytes("/readyz"))
                response = await read_response(reader)
                if response.status == 503:
                    out.append(response.received - sent)
                    break
        finally:
            writer.close()
            await server.wait(20)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(kind: str, seconds: float, connections: int = 20) -> tuple[float, float]:
    """Requests/s of GET /hello over ``seconds`` (after a warm-up), and server CPU µs/request.

    On a shared, noisy machine the CPU time the server spends per request is a
    far steadier measure of overhead than requests/s, which swings with the load
    of everything else running there.
    """
    port = free_port()
    server = await start_server([str(SERVERS), kind, str(port)], port)
    try:
        await run_load(
            "127.0.0.1",
            port,
            connections=connections,
            path="/hello",
            stop=_stop_after(0.5),
            max_seconds=10,
        )
        started, cpu = time.monotonic(), _cpu_seconds(server.proc.pid)
        result = await run_load(
            "127.0.0.1",
            port,
            connections=connections,
            path="/hello",
            stop=_stop_after(seconds),
            max_seconds=seconds + 10,
        )
        used = _cpu_seconds(server.proc.pid) - cpu
        return result.ok / (time.monotonic() - started), used / result.ok * 1e6
    finally:
        server.proc.send_signal(signal.SIGTERM)
        await server.wait(20)


def _stop_after(seconds: float) -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return stop


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"zero_drop": {}, "reaction": {}, "overhead": {}, "exit": {}}
    print("zero drop: 40 connections, handlers 50-400 ms, SIGTERM at 1.5 s", flush=True)
    for kind in KINDS:
        n = args.plain_runs if kind.startswith("plain") else args.runs
        runs = await zero_drop(kind, n)
        totals = {k: sum(r.load.as_dict()[k] for r in runs) for k in runs[0].load.as_dict()}
        results["zero_drop"][kind] = {
            "runs": n,
            "runs_with_drops": sum(1 for r in runs if r.load.dropped),
            "dropped_per_run": [r.load.dropped for r in runs],
            "exit_codes": sorted({r.exit_code for r in runs}),
            "errors": [r.load.errors for r in runs if r.load.dropped],
            "totals": totals,
        }
        exits = [r.exit_after_last_response * 1000 for r in runs]
        results["exit"][kind] = {"p50_ms": _pct(exits, 0.5), "max_ms": max(exits), "all_ms": exits}
        tails = [t for t in (_teardown_ms(r) for r in runs) if t is not None]
        if tails:  # spotgrace servers: how much of it is the interpreter's own exit
            results["exit"][kind]["teardown_p50_ms"] = _pct(tails, 0.5)
    print("reaction: SIGTERM -> /readyz 503", flush=True)
    for kind in ("grace-aiohttp", "grace-asgi"):
        for gap, runs in ((0.001, args.reaction_runs), (0.0, max(1, args.reaction_runs // 2))):
            values = [v * 1000 for v in await reaction(kind, runs, gap)]
            key = f"{kind}, probe every 1 ms" if gap else f"{kind}, probes back to back"
            results["reaction"][key] = {
                "runs": len(values),
                "p50_ms": _pct(values, 0.5),
                "p99_ms": _pct(values, 0.99),
                "max_ms": max(values),
            }
            print(f"  {key}: {results['reaction'][key]}", flush=True)
    print("overhead: GET /hello req/s, alternating rounds", flush=True)
    for grace_kind, plain_kind in PLAIN.items():
        plain, grace = [], []
        for _ in range(args.rounds):
            plain.append(await throughput(plain_kind, args.seconds))
            grace.append(await throughput(grace_kind, args.seconds))
        rps_ratio = statistics.median(g[0] / p[0] for g, p in zip(grace, plain, strict=True))
        cpu_ratio = statistics.median(p[1] for p in plain) / statistics.median(g[1] for g in grace)
        results["overhead"][grace_kind] = {
            "plain": plain_kind,
            "plain_rps": [p[0] for p in plain],
            "grace_rps": [g[0] for g in grace],
            "plain_cpu_us": [p[1] for p in plain],
            "grace_cpu_us": [g[1] for g in grace],
            "median_rps_ratio": rps_ratio,
            "cpu_ratio": cpu_ratio,
        }
        print(
            f"  {grace_kind} vs {plain_kind}: req/s {rps_ratio:.1%}, CPU-based {cpu_ratio:.1%}",
            flush=True,
        )
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        "| server | runs | runs with drops | ok | 503 | refused | dropped | exit codes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, r in results["zero_drop"].items():
        t = r["totals"]
        lines.append(
            f"| {kind} | {r['runs']} | {r['runs_with_drops']} | {t['ok']} | {t['503']} | "
            f"{t['refused']} | {t['dropped']} | {', '.join(map(str, r['exit_codes']))} |"
        )
    lines += [
        "",
        "| server | reaction p50 | reaction p99 | max | runs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, r in results["reaction"].items():
        lines.append(
            f"| {kind} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
            f"{r['max_ms']:.2f} ms | {r['runs']} |"
        )
    lines += [
        "",
        "| spotgrace | vs plain | req/s spotgrace | req/s plain | req/s ratio (median)"
        " | server CPU/request spotgrace | plain | CPU-based ratio |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, r in results["overhead"].items():
        g = ", ".join(f"{v:.0f}" for v in r["grace_rps"])
        p = ", ".join(f"{v:.0f}" for v in r["plain_rps"])
        gc = statistics.median(r["grace_cpu_us"])
        pc = statistics.median(r["plain_cpu_us"])
        lines.append(
            f"| {kind} | {r['plain']} | {g} | {p} | {r['median_rps_ratio']:.1%} "
            f"| {gc:.0f} µs | {pc:.0f} µs | {r['cpu_ratio']:.1%} |"
        )
    lines += [
        "",
        "| server | last response -> exit p50 | max | of which interpreter exit (p50) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, r in results["exit"].items():
        tail = f"{r['teardown_p50_ms']:.0f} ms" if "teardown_p50_ms" in r else "n/a"
        lines.append(f"| {kind} | {r['p50_ms']:.0f} ms | {r['max_ms']:.0f} ms | {tail} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="zero-drop runs per spotgrace server")
    parser.add_argument(
        "--plain-runs", type=int, default=10, help="zero-drop runs per plain server"
    )
    parser.add_argument("--reaction-runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="overhead rounds per pair")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one overhead round")
    parser.add_argument(
        "--quick", action="store_true", help="2 runs each, 5 reaction runs, 1 round"
    )
    args, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    if args.quick:
        args.runs = args.plain_runs = 2
        args.reaction_runs, args.rounds, args.seconds = 5, 1, 1.0
    results = asyncio.run(main(args))
    table = render(results)
    print()
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "http.md").write_text(table)
    (out / "http.json").write_text(json.dumps(results, indent=1))
    print(f"written: {out / 'http.md'}, {out / 'http.json'}")
