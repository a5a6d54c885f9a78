"""Finding 4 under ``spotgrace.asgi.serve()``: ``mark_close`` raising (request headers a tuple).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/serve_tick_raises.py [--code DIR] [--delay S]

``serve(gapp._app)`` (stop_timeout 15 s, drain_delay ``--delay``, default 0) in a subprocess.
Two requests in flight at SIGTERM: ``/tuple?ms=1500`` (the app makes ``scope["headers"]``
a tuple) and ``/work?ms=1500``. Expected: both answered 200, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from attack import FAILS, ROOT, check, connect  # noqa: E402

from bench.harness import free_port  # noqa: E402
from bench.loadclient import read_response, request_bytes  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {here!r})
import gapp, spotgrace.asgi
spotgrace.asgi.serve(gapp._app, port={port}, log_level="warning",
                     stop_timeout=15, drain_delay={delay})
"""


async def run(proc: object, port: int) -> None:
    (rt, wt), (rw, ww) = [await connect(port, proc) for _ in range(2)]
    wt.write(request_bytes("/tuple?ms=1500"))
    ww.write(request_bytes("/work?ms=1500"))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for name, r in (("tuple", rt), ("work", rw)):
        try:
            got = await asyncio.wait_for(read_response(r), 20)
            print(f"INFO {name}: {got.status} at +{got.received - t0:.1f} s")
            check(got.status == 200, f"{name} answered 200", got.status)
        except Exception as exc:
            print(f"INFO {name}: {exc!r:.90} at +{time.monotonic() - t0:.1f} s")
            check(False, f"{name} answered 200", "no response")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": a.code}
    code = SERVER.format(here=str(HERE), port=port, delay=a.delay)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    t0 = time.monotonic()
    try:
        asyncio.run(run(proc, port))
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"INFO exit {proc.returncode} after {time.monotonic() - t0:.1f} s")
    check(proc.returncode == 0, "exit code 0", proc.returncode)
    for line in out.splitlines():
        if any(k in line for k in ("Error", "exit", "drain", "never retrieved")):
            print("LOG ", line[:170])
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
