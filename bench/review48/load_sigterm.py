"""Load across a real SIGTERM: GraceMiddleware alone under uvicorn (bench/review48/alone_app.py).

``PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/load_sigterm.py HTTP MODE [CONNS]``

bench/loadclient.run_load (raw keep-alive HTTP/1.1, no retries) with CONNS
connections sending ``/work?ms=5..60`` for 2 s, then SIGTERM (drain_delay 1 s);
the load runs until every worker's connect is refused (at most 15 s). Every
request ends in one bucket: ok, rejected (503), other, refused, dropped.
Zero ``dropped`` and ``other`` is the guarantee.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time

from bench.harness import free_port
from bench.loadclient import run_load
from bench.review48.attack_sigterm import start, warm


def _stats(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [line.strip() for line in f if '"stats' in line]


async def main() -> int:
    http, mode = sys.argv[1], sys.argv[2]
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    port = free_port()
    log = tempfile.mktemp(prefix="alone-load-")
    proc = start(port, http, mode, log, {"DELAY": "1", "STOP": "12"})
    try:
        await warm(port, proc)
        load = asyncio.create_task(
            run_load("127.0.0.1", port, connections=conns, sleep_ms=(5, 60), max_seconds=15)
        )
        await asyncio.sleep(2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        result = await load
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(
        f"{http} {mode} lean={bool(os.environ.get('LEAN'))} conns={conns}: ok={result.ok} "
        f"rejected={result.rejected} other={result.other} refused={result.refused} "
        f"dropped={result.dropped} exit={proc.returncode} "
        f"exit_after={round(time.monotonic() - t0, 2)}s errors={result.errors[:3]}"
    )
    stats = _stats(log)
    print("  ", stats)
    offsets = sorted(round(float(e.split()[0]) - t0, 3) for e in result.errors)
    print("   drop times after SIGTERM (s):", offsets[:10], "...", offsets[-3:])
    return 1 if result.dropped or result.other else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
