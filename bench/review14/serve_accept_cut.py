"""f_accept_cut under ``spotgrace.asgi.serve()`` (same UvicornBook): a real SIGTERM.

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/serve_accept_cut.py [--code DIR]

``serve(gapp._app)`` (drain_delay 1 s, stop_timeout 15 s) in a subprocess; the same two
requests as f_accept_cut.py (``Accept: application/json, text/event-stream``; a
Content-Length JSON body and a chunked body, 30 parts over ~3 s), SIGTERM 0.3 s in.
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
from attack import FAILS, ROOT, check, connect, read_stream  # noqa: E402
from f_accept_cut import req  # noqa: E402

from bench.harness import free_port  # noqa: E402
from bench.loadclient import read_response  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {here!r})
import gapp, spotgrace.asgi
spotgrace.asgi.serve(gapp._app, port={port}, log_level="warning",
                     stop_timeout=15, drain_delay=1.0)
"""


async def run(proc: object, port: int) -> None:
    (rj, wj), (rd, wd) = [await connect(port, proc) for _ in range(2)]
    wj.write(req("/json?n=30&ms=100"))
    wd.write(req("/download?n=30&ms=100"))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for name, r in (("json", rj), ("download", rd)):
        try:
            got = await asyncio.wait_for(read_response(r), 25)
            print(f"INFO {name}: {got.status}, {len(got.body)} bytes at +{got.received - t0:.1f} s")
            check(got.status == 200 and len(got.body) == 30000, f"{name} whole", len(got.body))
        except Exception as exc:
            await read_stream(r, 0.1)
            print(f"INFO {name}: {exc!r:.100} at +{time.monotonic() - t0:.1f} s")
            check(False, f"{name} whole", "incomplete")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": a.code}
    code = SERVER.format(here=str(HERE), port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    t0 = time.monotonic()
    try:
        asyncio.run(run(proc, port))
        proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"INFO exit {proc.returncode} after {time.monotonic() - t0:.1f} s")
    check(proc.returncode == 0, "exit code 0", proc.returncode)
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
