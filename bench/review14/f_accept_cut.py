"""Finding: responses that are not event streams are cut because the request's Accept names one.

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/f_accept_cut.py [--code DIR] [--worker W]

gunicorn + spotgrace's UvicornWorker, ``gapp:app``. Two requests begun before SIGTERM
with ``Accept: application/json, text/event-stream`` (what MCP "streamable HTTP"
clients send on every POST; any client may list both), each answered with a plain,
non-streaming body whose parts are sent over ~3 s (intake stops 1 s after SIGTERM):

* ``/json``: ``Content-Length`` JSON body, sent in 30 parts;
* ``/download``: a chunked body of 30 parts (``Content-Type`` none).

Expected (as with the worker before 4b206e8): both complete (200, whole body), exit 0.
``--code DIR``: the spotgrace checkout the gunicorn processes import.
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
from attack import FAILS, ROOT, check, connect, read_stream, start

from bench.loadclient import read_response

ACCEPT = "Accept: application/json, text/event-stream\r\n"


def req(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{ACCEPT}\r\n".encode()


async def run(proc: object, port: int) -> None:
    (rj, wj), (rd, wd) = [await connect(port, proc) for _ in range(2)]
    wj.write(req("/json?n=30&ms=100"))
    wd.write(req("/download?n=30&ms=100"))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for name, r, want in (("json", rj, 30000), ("download", rd, 30000)):
        try:
            got = await asyncio.wait_for(read_response(r), 25)
            print(f"INFO {name}: {got.status}, {len(got.body)} bytes at +{got.received - t0:.1f} s")
            check(got.status == 200 and len(got.body) == want, f"{name} whole", len(got.body))
        except Exception as exc:
            _data, _how = await read_stream(r, 0.1)
            print(f"INFO {name}: {exc!r:.100} at +{time.monotonic() - t0:.1f} s")
            check(False, f"{name} whole", "incomplete")
    wj.close()
    wd.close()


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
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"INFO master exit {proc.returncode} after {time.monotonic() - t0:.1f} s")
    check(proc.returncode == 0, "exit code 0", proc.returncode)
    for line in out.splitlines():
        if any(k in line for k in ("worker_failed", "Cancel", "Waiting", "shorter")):
            print("LOG ", line[:160])
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
