"""Finding: an exception in ``UvicornBook.mark_close`` kills the worker's tick loop.

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/f_tick_raises.py [--code DIR]

gunicorn + spotgrace's UvicornWorker, ``gapp:app`` (drain_delay 2 s, stop_timeout 15 s).
A request in flight at SIGTERM whose app replaced ``scope["headers"]`` by a tuple (New
Relic's agent does it to every request: ``ASGIWebTransaction.__init__`` in
newrelic/api/asgi_application.py, on uvicorn's own scope): ``mark_close`` appends to it and raises, in the
worker's ``on_tick``; uvicorn's ``main_loop`` ends with that exception and the worker
goes straight to ``server.shutdown()`` in the middle of the lame duck. A second
client then opens a connection during the lame duck and asks for ``/work?ms=0``.
Expected (as before 4b206e8): both answered 200, the worker lives through the lame
duck, exit 0.
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
from attack import FAILS, ROOT, check, connect, start

from bench.loadclient import read_response, request_bytes


async def run(proc: object, port: int) -> None:
    r, w = await connect(port, proc)
    w.write(request_bytes("/tuple?ms=1000"))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    try:
        got = await asyncio.wait_for(read_response(r), 15)
        print(f"INFO tuple request: {got.status} close={got.close} at +{time.monotonic() - t0:.1f}")
        check(got.status == 200, "request in flight answered", got.status)
    except Exception as exc:
        check(False, "request in flight answered", repr(exc)[:80])
    await asyncio.sleep(0.5)  # lame duck (2 s): keep serving new connections
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(request_bytes("/work?ms=0"))
        got2 = await asyncio.wait_for(read_response(r2), 5)
        print(f"INFO lame-duck request: {got2.status} at +{time.monotonic() - t0:.1f}")
        check(got2.status == 200, "a new connection in the lame duck served", got2.status)
        w2.close()
    except Exception as exc:
        print(f"INFO lame-duck request: {exc!r:.80} at +{time.monotonic() - t0:.1f}")
        check(False, "a new connection in the lame duck served", repr(exc)[:60])
    w.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    a = p.parse_args()
    os.environ["DELAY"] = "2.0"
    log = tempfile.mktemp(prefix="gapp-", suffix=".log")
    proc, port = start(Path(a.code), "UvicornWorker", "app", log, 1, [])
    try:
        asyncio.run(run(proc, port))
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"INFO master exit {proc.returncode}")
    check(proc.returncode == 0, "exit code 0", proc.returncode)
    check("never retrieved" not in out, "no exception left in the worker's tick loop")
    boots = [ln for ln in out.splitlines() if "Booting worker" in ln]
    check(len(boots) == 1, "the worker lived through the lame duck (no second boot)", len(boots))
    keys = ("Error", "worker_failed", "Shutting down", "never retrieved", "Booting", "exited")
    for line in out.splitlines():
        if any(k in line for k in keys):
            print("LOG ", line[:170])
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
