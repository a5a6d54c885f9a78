"""Client disconnects across SIGTERM (held check).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/disconnects.py [--code DIR] [--worker W]

Begun before SIGTERM, their clients gone at SIGTERM + 0.2 s: a slow request (straight to
the app), an event stream with Accept, one whose response has not started yet (Accept,
``?ms=2500``). A slow request on another connection must still be answered; the master
must exit 0 without waiting for the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack import FAILS, ROOT, check, connect, sse_request, start

from bench.loadclient import read_response, request_bytes


async def run(proc: object, port: int) -> None:
    conns = [await connect(port, proc) for _ in range(4)]
    conns[0][1].write(request_bytes("/work?ms=2000"))
    conns[1][1].write(sse_request("/events", True))
    conns[2][1].write(sse_request("/events?ms=2500", True))
    conns[3][1].write(request_bytes("/work?ms=1500"))
    await asyncio.wait_for(conns[1][0].readuntil(b"data: 1"), 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    for _, w in conns[:3]:
        w.transport.abort()  # type: ignore[attr-defined]
    got = await asyncio.wait_for(read_response(conns[3][0]), 15)
    check(got.status == 200 and got.close, "the other slow request: 200 + close", got.status)
    print(f"INFO answered at +{time.monotonic() - t0:.1f} s")
    conns[3][1].close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    p.add_argument("--worker", default="UvicornWorker")
    a = p.parse_args()
    log = tempfile.mktemp(prefix="gapp-", suffix=".log")
    proc, port = start(Path(a.code), a.worker, "app", log, 1, [])
    t0 = time.monotonic()
    try:
        asyncio.run(run(proc, port))
        proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - t0
    print(f"INFO master exit {proc.returncode} after {took:.1f} s")
    check(proc.returncode == 0 and took < 8, "exit 0, well within the budget", proc.returncode)
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
