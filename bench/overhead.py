"""What spotgrace costs per request before the notice: throughput vs the plain server, interleaved.

    python bench/overhead.py                       # 25 rounds of 2 s per server, ~8 minutes
    python bench/overhead.py --before /tmp/old     # also a spotgrace tree to compare with
    python bench/overhead.py --quick               # 3 rounds of 1 s (a smoke run)
    python bench/overhead.py --readiness 200       # also SIGTERM -> /readyz 503, 200 samples each

Every server is a real subprocess on 127.0.0.1, started once and kept for the
whole run; ``wrk`` (``-t1 -c20``, ``GET /hello``; ``hey`` if wrk is missing)
loads one server at a time, and each round visits every server of a group in
a rotating order, so that the machine's other load hits all of them alike.
Per round: requests/s (from the load tool) and the server's CPU time per
request (user + system from ``/proc/PID/stat`` over the same window, divided
by the requests served). The ratio of a round is spotgrace's requests/s over
the plain server's in the same round; the table gives its median and IQR
(25th-75th percentile) over the rounds, and the CPU-based ratio (median plain
CPU/request over median spotgrace CPU/request).

Groups (the same app in each, ``GET /hello`` answers at once):

``aiohttp``  ``web.run_app`` vs ``spotgrace.aiohttp.run_app``
``uvicorn``  a Starlette app under ``uvicorn.run`` vs ``spotgrace.asgi.serve``
``bare``     a bare ASGI app under ``uvicorn.run`` vs ``spotgrace.asgi.serve``
             (GraceMiddleware around it), and vs the bare app in GraceMiddleware
             under a plain ``uvicorn.Server`` (the middleware used alone)
``wsgi``     a bare WSGI app under waitress vs the same in ``spotgrace.wsgi.GraceMiddleware``
             (``bench/wsgi_servers.py``)
``gunicorn`` the bare WSGI app under gunicorn, one sync worker, vs the same with
             ``-c python:spotgrace.gunicorn`` (CPU: the master and its worker)

``--before DIR`` adds, to each group, the spotgrace servers run from another
source tree (e.g. ``git archive <commit> | tar -x -C DIR``) for a before/after
table measured in the same rounds. Writes ``bench/results/overhead.{md,json}``
and the plot ``docs/img/overhead.png`` (matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import Server, free_port, start_server  # noqa: E402

SERVERS = str(ROOT / "bench" / "servers.py")
WSGI_SERVERS = str(ROOT / "bench" / "wsgi_servers.py")
HERE = str(Path(__file__).resolve())
#: group -> (plain kind, spotgrace kinds...): each kind is (label, argv template, tree?)
GROUPS: dict[str, list[tuple[str, list[str], bool]]] = {
    "aiohttp": [
        ("plain aiohttp", [SERVERS, "plain-aiohttp"], False),
        ("spotgrace.aiohttp", [SERVERS, "grace-aiohttp"], True),
    ],
    "uvicorn": [
        ("plain uvicorn", [SERVERS, "plain-uvicorn"], False),
        ("spotgrace.asgi.serve", [SERVERS, "grace-asgi"], True),
    ],
    "bare": [
        ("bare ASGI, plain uvicorn", [HERE, "--serve", "bare-plain"], False),
        ("bare ASGI, spotgrace.asgi.serve", [HERE, "--serve", "bare-grace"], True),
        ("bare ASGI, GraceMiddleware only", [HERE, "--serve", "bare-middleware"], True),
    ],
    "wsgi": [
        ("bare WSGI, plain waitress", [WSGI_SERVERS, "plain-bare"], False),
        ("bare WSGI, spotgrace.wsgi (waitress)", [WSGI_SERVERS, "grace-bare"], True),
    ],
    "gunicorn": [
        ("bare WSGI, plain gunicorn sync", [WSGI_SERVERS, "gunicorn-plain-bare"], False),
        ("bare WSGI, spotgrace.gunicorn sync", [WSGI_SERVERS, "gunicorn-grace-bare"], True),
    ],
}


# ------------------------------------------------------------------ servers


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def serve(kind: str, port: int) -> None:
    """The bare-ASGI servers (the others are in bench/servers.py)."""
    import uvicorn

    host = "127.0.0.1"
    quiet: dict[str, Any] = {"log_level": "warning", "access_log": False}
    if kind == "bare-plain":
        uvicorn.run(_bare_app, host=host, port=port, **quiet)
    elif kind == "bare-grace":
        import spotgrace.asgi

        spotgrace.asgi.serve(
            _bare_app,
            host=host,
            port=port,
            log_level="warning",
            uvicorn_options={"access_log": False},
        )
    elif kind == "bare-middleware":
        import spotgrace
        from spotgrace.asgi import GraceMiddleware

        async def main() -> None:
            async with spotgrace.graceful() as grace:
                app = GraceMiddleware(_bare_app, grace=grace)
                server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **quiet))
                task = asyncio.create_task(server.serve())
                await grace.wait()
                server.should_exit = True
                await task

        asyncio.run(main())
    else:
        raise SystemExit(f"unknown kind {kind!r}")


# ------------------------------------------------------------------ measuring


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (Linux /proc).

    A gunicorn master's worker is its child: its time is counted while it runs.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            total += sum(cpu_seconds(int(child)) for child in children.read_text().split())
    return total


async def load(port: int, seconds: float, connections: int) -> tuple[int, float]:
    """(requests completed, requests/s) of ``GET /hello`` with wrk, or hey."""
    url = f"http://127.0.0.1:{port}/hello"
    if shutil.which("wrk"):
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url]
    elif shutil.which("hey"):
        argv = ["hey", "-c", str(connections), "-z", f"{seconds:g}s", url]
    else:
        raise SystemExit("neither wrk nor hey found: python3 scripts/dev.py bench installs wrk")
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out = (await proc.communicate())[0].decode()
    if argv[0] == "wrk":
        done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
        if "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"wrk saw errors:\n{out}")
    else:
        rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
        done = int(re.search(r"\[200\]\s+(\d+) responses", out).group(1))  # type: ignore[union-attr]
    return done, rps


@dataclass
class Entry:
    """One server of a group and its per-round numbers."""

    label: str
    argv: list[str]
    tree: str | None  # PYTHONPATH for spotgrace (None: this tree)
    server: Server | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    async def start(self) -> None:
        port = free_port()
        env = {"PYTHONPATH": self.tree} if self.tree else None
        self.server = await start_server([*self.argv, str(port)], port, env=env)

    async def round(self, seconds: float, connections: int) -> None:
        assert self.server is not None
        pid = self.server.proc.pid
        before = cpu_seconds(pid)
        done, rps = await load(self.server.port, seconds, connections)
        self.cpu_us.append((cpu_seconds(pid) - before) / max(done, 1) * 1e6)
        self.rps.append(rps)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.proc.send_signal(signal.SIGTERM)
            await self.server.wait(20)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """25th, 50th, 75th percentile (inclusive method)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


async def run_group(name: str, args: argparse.Namespace) -> list[Entry]:
    entries: list[Entry] = []
    for label, argv, is_grace in GROUPS[name]:
        entries.append(Entry(label, argv, None))
        if is_grace and args.before:
            entries.append(Entry(f"{label} (before)", argv, args.before))
    for entry in entries:
        await entry.start()
    try:
        for entry in entries:  # warm-up, not recorded
            await load(entry.server.port, 1, args.connections)  # type: ignore[union-attr]
        for r in range(args.rounds):
            shift = r % len(entries)
            for entry in entries[shift:] + entries[:shift]:
                await entry.round(args.seconds, args.connections)
            print(
                f"  {name} round {r + 1}/{args.rounds}: "
                + ", ".join(f"{e.label} {e.rps[-1]:.0f}/s {e.cpu_us[-1]:.0f}µs" for e in entries),
                flush=True,
            )
    finally:
        for entry in entries:
            await entry.stop()
    return entries


def summarise(groups: dict[str, list[Entry]]) -> list[dict[str, Any]]:
    rows = []
    for name, entries in groups.items():
        plain = entries[0]
        for entry in entries[1:]:
            ratios = [g / p for g, p in zip(entry.rps, plain.rps, strict=True)]
            q1, med, q3 = quartiles(ratios)
            rows.append(
                {
                    "group": name,
                    "label": entry.label,
                    "plain": plain.label,
                    "rounds": len(ratios),
                    "ratio_median": med,
                    "ratio_q1": q1,
                    "ratio_q3": q3,
                    "ratios": ratios,
                    "rps_median": statistics.median(entry.rps),
                    "plain_rps_median": statistics.median(plain.rps),
                    "cpu_us_median": statistics.median(entry.cpu_us),
                    "plain_cpu_us_median": statistics.median(plain.cpu_us),
                    "cpu_ratio": statistics.median(plain.cpu_us) / statistics.median(entry.cpu_us),
                }
            )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| spotgrace | vs | rounds | req/s ratio, median (IQR) | CPU µs/req | plain CPU µs/req"
        " | CPU-based ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['plain']} | {r['rounds']} | {r['ratio_median']:.1%} "
            f"({r['ratio_q1']:.0%}-{r['ratio_q3']:.0%}) | {r['cpu_us_median']:.1f} "
            f"| {r['plain_cpu_us_median']:.1f} | {r['cpu_ratio']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.6 * len(rows) + 2))
    labels = [r["label"] for r in rows]
    with warnings.catch_warnings():  # `vert` is deprecated from 3.11; `orientation` is 3.10+
        warnings.simplefilter("ignore", DeprecationWarning)
        left.boxplot([[100 * v for v in r["ratios"]] for r in rows], vert=False, tick_labels=labels)
    left.axvline(97, color="tab:red", linestyle="--", label="goal: 97%")
    left.axvline(100, color="grey", linewidth=0.8)
    left.set_xlabel("requests/s vs the plain server, per round (%)")
    left.legend(loc="lower right")
    left.invert_yaxis()
    width = 0.4
    ys = range(len(rows))
    right.barh(
        [y - width / 2 for y in ys], [r["plain_cpu_us_median"] for r in rows], width, label="plain"
    )
    right.barh(
        [y + width / 2 for y in ys], [r["cpu_us_median"] for r in rows], width, label="spotgrace"
    )
    right.set_yticks(list(ys), [""] * len(rows))
    right.invert_yaxis()
    right.set_xlabel("server CPU per request, median (µs)")
    right.legend(loc="upper right")
    fig.suptitle("GET /hello, wrk -t1 -c20, interleaved rounds (bench/overhead.py)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


# ------------------------------------------------------------------ readiness


async def readiness(samples: int, tree: str | None) -> dict[str, dict[str, float]]:
    """SIGTERM -> first /readyz 503, probes back to back on one keep-alive connection.

    One server per sample (each sample ends it). ``tree``: PYTHONPATH for spotgrace.
    """
    from bench.loadclient import read_response, request_bytes

    out = {}
    for kind in ("grace-aiohttp", "grace-asgi"):
        values = []
        for _ in range(samples):
            port = free_port()
            env = {"PYTHONPATH": tree} if tree else None
            server = await start_server([SERVERS, kind, str(port)], port, env=env)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request_bytes("/readyz"))
                assert (await read_response(reader)).status == 200
                sent = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                while True:
                    writer.write(request_bytes("/readyz"))
                    response = await read_response(reader)
                    if response.status == 503:
                        values.append((response.received - sent) * 1000)
                        break
            finally:
                writer.close()
                await server.wait(20)
        values.sort()
        out[kind] = {
            "samples": len(values),
            "p50_ms": statistics.median(values),
            "p99_ms": values[min(len(values) - 1, round(0.99 * (len(values) - 1)))],
            "max_ms": values[-1],
        }
        print(f"  readiness {kind}{' (before)' if tree else ''}: {out[kind]}", flush=True)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    groups = {}
    for name in args.groups:
        print(f"{name}: {args.rounds} rounds of {args.seconds:g} s per server", flush=True)
        groups[name] = await run_group(name, args)
    results: dict[str, Any] = {"rows": summarise(groups) if groups else []}
    results["raw"] = {
        name: {e.label: {"rps": e.rps, "cpu_us": e.cpu_us} for e in entries}
        for name, entries in groups.items()
    }
    if args.readiness:
        results["readiness"] = await readiness(args.readiness, None)
        if args.before:
            results["readiness_before"] = await readiness(args.readiness, args.before)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--before", help="a spotgrace source tree to compare with")
    parser.add_argument("--readiness", type=int, default=0, help="readiness samples per server")
    parser.add_argument("--quick", action="store_true")
    args, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    if args.quick:
        args.rounds, args.seconds = 3, 1.0
    results = asyncio.run(main(args))
    table = render(results["rows"]) if results["rows"] else ""
    print("\n" + table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "overhead.md").write_text(table)
    (out / "overhead.json").write_text(json.dumps(results, indent=1))
    if results["rows"]:
        plot(results["rows"], ROOT / "docs" / "img" / "overhead.png")
        print(f"written: {out / 'overhead.md'}, {out / 'overhead.json'}, docs/img/overhead.png")
