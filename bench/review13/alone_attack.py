"""Drive bench/review13/alone_server.py: keep-alive load across the notice, one SSE
stream under way, probes; classify every request.

Usage: alone_attack.py MODE NESTED NOTICE [RUNS]
Violations counted per run:
  early_lost    a request written before the notice was taken that got no 200
  no_close      a response with X-Ready: 0 (started after the notice) without Connection: close
  sse_open      the SSE stream begun before the notice was not ended by the server
  stuck         FINAL inflight != 0, or the drain did not finish ("drain.timeout" in the log)
  exit          exit code != 0
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes


async def worker(port, stop, log, rng):  # type: ignore[no-untyped-def]
    reader = writer = None
    while not stop.is_set():
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
        ms = rng.randint(20, 300)
        sent = time.monotonic()
        writer.write(request_bytes(f"/work?ms={ms}"))
        try:
            r = await asyncio.wait_for(read_response(reader), 15)
        except Exception as exc:
            log.append((sent, None, repr(exc)))
            writer.close()
            writer = None
            continue
        log.append((sent, r.status, (r.headers.get("x-ready"), r.close)))
        if r.close:
            writer.close()
            writer = None


async def sse(port, out):  # type: ignore[no-untyped-def]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes("/sse"))
    head = await reader.readuntil(b"\r\n\r\n")
    out["head"] = head
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), 15)
            if not chunk:
                out["eof"] = time.monotonic()
                return
            if b"0\r\n\r\n" in chunk:
                out["ended"] = time.monotonic()
                return
    except Exception as exc:
        out["error"] = repr(exc)


async def one(mode: str, nested: str, notice: str) -> dict[str, object]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "bench/review13/alone_server.py",
        str(port),
        mode,
        nested,
        notice,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def pump() -> None:
        async for raw in proc.stdout:  # type: ignore[union-attr]
            lines.append(raw.decode(errors="replace").rstrip())

    pumper = asyncio.create_task(pump())
    end = time.monotonic() + 20
    while not any(line == "STARTED" for line in lines):
        assert time.monotonic() < end, lines
        await asyncio.sleep(0.05)
    stop = asyncio.Event()
    log: list[tuple[float, object, object]] = []
    rng = random.Random()
    sse_out: dict[str, object] = {}
    sse_task = asyncio.create_task(sse(port, sse_out))
    workers = [
        asyncio.create_task(worker(port, stop, log, random.Random(rng.random()))) for _ in range(30)
    ]
    await asyncio.sleep(1.0)
    t_notice = time.monotonic()
    if notice == "signal":
        proc.send_signal(signal.SIGTERM)
    else:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request_bytes("/notice?ms=0", close=True))
        await asyncio.wait_for(read_response(r), 10)
        w.close()
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.wait(workers, timeout=20)
    await asyncio.wait([sse_task], timeout=15)
    code = await asyncio.wait_for(proc.wait(), 25)
    await pumper
    early_lost = [e for e in log if e[0] < t_notice - 0.05 and e[1] != 200]
    no_close = [e for e in log if e[1] is not None and e[2][0] == "0" and not e[2][1]]  # type: ignore[index]
    final = [json.loads(line[6:]) for line in lines if line.startswith("FINAL ")]
    stuck = not final or final[0]["inflight"] != 0 or any("drain.timeout" in line for line in lines)
    return {
        "requests": len(log),
        "early_lost": early_lost[:3] and len(early_lost),
        "no_close": len(no_close),
        "no_close_at": [round(e[0] - t_notice, 3) for e in no_close[:5]],
        "sse_open": not ("ended" in sse_out or "eof" in sse_out),
        "sse": {k: v for k, v in sse_out.items() if k != "head"},
        "stuck": stuck,
        "final": final,
        "exit": code,
        "tail": [line for line in lines if "drain" in line or "error" in line.lower()][-4:],
    }


def main() -> int:
    mode, nested, notice = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    bad = 0
    for _ in range(runs):
        res = asyncio.run(one(mode, nested, notice))
        fail = bool(
            res["early_lost"]
            or res["no_close"]
            or res["sse_open"]
            or res["stuck"]
            or res["exit"] != 0
        )
        bad += fail
        print(("FAIL " if fail else "ok   ") + json.dumps(res, default=str))
    print(f"{mode} {nested} {notice}: {bad}/{runs} runs with a violation")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
