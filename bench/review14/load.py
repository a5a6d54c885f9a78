"""Keep-alive load across a real SIGTERM to a gunicorn master (spotgrace UvicornWorker).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/load.py \
        [--code DIR] [--worker W] [-w N] [--group] [--max-requests N] [--app app|wrapped]

bench/loadclient.py (raw HTTP/1.1, no retries) with 60 connections sending
``/work?ms=0..40`` back to back; SIGTERM (to the master, or ``--group`` to the
process group) 2 s in (``--term-at 8``: 8 s in, and the load stops 0.5 s before the
SIGTERM, so what is dropped was dropped by ``--max-requests`` restarts alone); the load stops when every connection is refused or 15 s
passed. Every request ends in one bucket; ``dropped`` must be 0.
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
from attack import ROOT, connect, start

from bench.loadclient import run_load


async def run(
    proc: object, port: int, group: bool, term_at: float, path: str = "/work"
) -> dict[str, int]:
    (_, w) = await connect(port, proc)
    w.close()

    async def kill() -> None:
        await asyncio.sleep(term_at)
        pid = proc.pid  # type: ignore[attr-defined]
        os.killpg(pid, signal.SIGTERM) if group else os.kill(pid, signal.SIGTERM)

    k = asyncio.ensure_future(kill())
    limit = term_at - 0.5 if term_at > 2 else 15.0
    res = await run_load(
        "127.0.0.1",
        port,
        connections=60,
        sleep_ms=(0, 40),
        max_seconds=limit,
        path=path + "?ms={ms}",
    )
    await k
    print("INFO errors:", res.errors[:5])
    return {**res.as_dict(), "connections": res.connections}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    p.add_argument("--worker", default="UvicornWorker")
    p.add_argument("--app", default="app")
    p.add_argument("-w", "--workers", type=int, default=2)
    p.add_argument("--group", action="store_true")
    p.add_argument("--max-requests", type=int, default=0)
    p.add_argument("--path", default="/work", help="/tuple: the app stores headers as a tuple")
    p.add_argument("--term-at", type=float, default=2.0, help=">2: the load stops 0.5 s later")
    a = p.parse_args()
    log = tempfile.mktemp(prefix="gapp-", suffix=".log")
    extra = ["--max-requests", str(a.max_requests)] if a.max_requests else []
    proc, port = start(Path(a.code), a.worker, a.app, log, a.workers, extra)
    t0 = time.monotonic()
    try:
        counts = asyncio.run(run(proc, port, a.group, a.term_at, a.path))
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print("INFO counts:", counts)
    print(f"INFO master exit {proc.returncode} after {time.monotonic() - t0:.1f} s")
    bad = [ln for ln in out.splitlines() if "worker_failed" in ln or "Traceback" in ln]
    for ln in bad[:5]:
        print("LOG ", ln[:160])
    ok = counts["dropped"] == 0 and counts["other"] == 0 and proc.returncode == 0
    print("RESULT", "OK" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
