"""Finding: an event stream begun before the notice without ``Accept: text/event-stream``.

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/f_sse_no_accept.py [--code DIR] [--worker W]

gunicorn + spotgrace's UvicornWorker, ``gapp:app`` (drain_delay 1 s, stop_timeout 15 s).
One event stream (``Content-Type: text/event-stream``) requested with ``Accept: */*``
(``fetch()``'s default, curl's, most HTTP client libraries') begun before SIGTERM.
Before 4b206e8 the worker's full path recognised it by its response's Content-Type and
ended it when intake stopped: exit 0, lifespan shutdown and the worker's hooks ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack import FAILS, ROOT, check, connect, read_stream, sse_request, start


async def run(proc: object, port: int) -> None:
    r, w = await connect(port, proc)
    w.write(sse_request("/events", False))
    await asyncio.wait_for(r.readuntil(b"data: 2"), 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    data, how = await read_stream(r, 25)
    print(f"INFO stream: {how} at +{time.monotonic() - t0:.1f} s, tail {data[-14:]!r}")
    check(how == "eof" and data.endswith(b"0\r\n\r\n"), "stream ended with its last chunk")
    w.close()


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
    text = Path(log).read_text() if Path(log).exists() else ""  # none: nothing logged
    events = [json.loads(x)["event"] for x in text.splitlines()]
    print("INFO app events:", events)
    check("lifespan-shutdown" in events, "lifespan shutdown ran")
    check("worker-hook" in events, "the worker's on_shutdown hook ran")
    for line in out.splitlines():
        if any(k in line for k in ("worker_failed", "Cancel", "SIGKILL", "kill")):
            print("LOG ", line[:160])
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
