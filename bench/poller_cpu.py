"""The early-warning poller's CPU per request: httpx, spotgrace's own client, a minimal poller.

    python bench/poller_cpu.py                  # 8 interleaved rounds of 300 requests each
    python bench/poller_cpu.py --quick

The fake metadata endpoints (``spotgrace.testing.FakeEndpoints``) run in this
process; each measurement is a child process that makes the requests the
``ecs`` and ``ec2`` sources make (``GET`` task metadata; ``GET`` spot
instance-action with an IMDSv2 token, fetched once with ``PUT``), one every
``--gap`` seconds on a kept-alive connection, and reports its own CPU time
(getrusage user + system) over them minus that of the same child sleeping the
same schedule without requests. Modes:

``httpx``    ``spotgrace._metadata._fetch.fetch`` with ``async_client`` (the
             client before this change), guards included
``light``    ``spotgrace._metadata._http11.Http11Client`` (what the watcher
             uses for ``http://`` endpoints now), guards included
``minimal``  a hand-written poller: write the request bytes, read the head,
             read Content-Length bytes; no checks at all (the floor)
``watcher``  the real ``spotgrace.watch.Watcher`` with both sources (adds
             JSON parsing and the sources' logic); CPU per request made

Rounds alternate the modes; the table gives the median CPU per request and
the ratio to ``minimal``. Writes ``bench/results/poller.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("httpx", "light", "minimal", "watcher")
SPOT = "/latest/meta-data/spot/instance-action"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _token(base: str) -> str:
    reader, writer = await asyncio.open_connection(*_hostport(base))
    writer.write(
        b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"
    )
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _hostport(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


async def child(mode: str, count: int, gap: float, env: dict[str, str]) -> dict[str, float]:
    """Run in the child: ``count`` requests (or the idle schedule) and the CPU they took."""
    ecs = env["ECS_CONTAINER_METADATA_URI_V4"] + "/task"
    imds = env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].rstrip("/")
    token = await _token(imds)
    urls = [(ecs, {}), (imds + SPOT, {"X-aws-ec2-metadata-token": token})]
    made = 0

    if mode == "watcher":
        import spotgrace.watch as watch
        from spotgrace.watch._sources import Ec2Source, EcsSource

        os.environ.update(env)
        watcher = watch.Watcher(
            [EcsSource(environ=env), Ec2Source(environ=env)],
            on_notice=lambda n: None,
            interval=gap * 2,  # two requests per cycle: one per source (the token is cached)
            jitter=0.0,
        )
        task = asyncio.create_task(watcher.run())
        await asyncio.sleep(gap * 4)  # the first polls (token, connections) are set-up
        start_polls = sum(s["polls"] for s in watcher.statistics().values())
        cpu = _cpu()
        await asyncio.sleep(gap * count)
        used = _cpu() - cpu
        made = sum(s["polls"] for s in watcher.statistics().values()) - start_polls
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return {"cpu": used, "requests": made}

    fetch: Any = None
    closer: Any = None
    if mode == "httpx":
        from spotgrace._metadata import _fetch

        client = _fetch.async_client(2.0)

        async def fetch(url: str, headers: dict[str, str]) -> bytes:
            answer = await _fetch.fetch(client, "GET", url, time_limit=2.0, headers=headers)
            return answer.body

        closer = client.aclose
    elif mode == "light":
        from spotgrace._metadata._http11 import Http11Client

        light = Http11Client()

        async def fetch(url: str, headers: dict[str, str]) -> bytes:
            answer = await light.fetch("GET", url, time_limit=2.0, max_body=65536, headers=headers)
            return answer.body

        closer = light.aclose
    elif mode == "minimal":
        conns: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

        async def fetch(url: str, headers: dict[str, str]) -> bytes:
            base, _, path = url.removeprefix("http://").partition("/")
            if base not in conns:
                host, port = base.split(":")
                conns[base] = await asyncio.open_connection(host, int(port))
            reader, writer = conns[base]
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: {base}\r\n{extra}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            return await reader.readexactly(length)

    async def one(i: int) -> None:
        if fetch is not None:
            url, headers = urls[i % 2]
            body = await fetch(url, headers)
            assert body, url

    for i in range(4):  # set-up: connections, imports
        await one(i)
    cpu = _cpu()
    started = time.monotonic()
    for i in range(count):
        await one(i)
        made += fetch is not None
        await asyncio.sleep(max(0.0, started + (i + 1) * gap - time.monotonic()))
    used = _cpu() - cpu
    if closer is not None:
        await closer()
    return {"cpu": used, "requests": made}


def run_child(mode: str, count: int, gap: float, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(count), str(gap), json.dumps(env)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(args: argparse.Namespace) -> dict[str, Any]:
    from spotgrace.testing import FakeEndpoints

    per_request: dict[str, list[float]] = {m: [] for m in MODES}
    idle: list[float] = []
    with FakeEndpoints() as fake:
        env = fake.env()
        for r in range(args.rounds):
            base = run_child("idle", args.count, args.gap, env)["cpu"]
            idle.append(base)
            order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
            for mode in order:
                got = run_child(mode, args.count, args.gap, env)
                per_request[mode].append((got["cpu"] - base) / got["requests"] * 1000)
            print(
                f"  round {r + 1}/{args.rounds}: idle {base * 1000:.1f} ms; "
                + ", ".join(f"{m} {per_request[m][-1]:.3f} ms/req" for m in MODES),
                flush=True,
            )
    floor = statistics.median(per_request["minimal"])
    rows = {
        m: {
            "ms_per_request_median": statistics.median(v),
            "all": v,
            "vs_minimal": statistics.median(v) / floor,
            "core_share_at_5s": statistics.median(v) / 1000 * 2 / 5.0,  # ecs + ec2 every 5 s
        }
        for m, v in per_request.items()
    }
    return {"rounds": args.rounds, "count": args.count, "gap": args.gap, "modes": rows}


def render(results: dict[str, Any]) -> str:
    lines = [
        "| client | CPU per request (median) | vs minimal | share of a core, ecs+ec2 every 5 s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode, r in results["modes"].items():
        lines.append(
            f"| {mode} | {r['ms_per_request_median']:.3f} ms | {r['vs_minimal']:.2f}x "
            f"| {r['core_share_at_5s']:.4%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        result = asyncio.run(
            child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5]))
        )
        print(json.dumps(result))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--count", type=int, default=300, help="requests per child")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between requests")
    parser.add_argument("--quick", action="store_true")
    args, _unknown = parser.parse_known_args()
    if args.quick:
        args.rounds, args.count = 2, 100
    results = main(args)
    table = render(results)
    print("\n" + table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "poller.md").write_text(table)
    (out / "poller.json").write_text(json.dumps(results, indent=1))
