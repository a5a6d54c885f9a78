"""Finding: one event stream whose client stopped reading keeps the others from being ended.

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/f_stalled_stream.py [--code DIR]

gunicorn + spotgrace's UvicornWorker, ``gapp:app`` (drain_delay 1 s, stop_timeout 15 s).
Before SIGTERM: four event streams (``Accept: text/event-stream``) whose clients read
nothing (a dead peer: the socket buffers fill, uvicorn's ``send`` waits in
``flow.drain()``), made in turn with four event streams whose clients read. The book ends the
streams one after the other with ``await cycle.send(...)``: the first it meets that
cannot be written blocks the rest. Expected (as before 4b206e8, where each stream had
its own watcher): the four readers' streams end cleanly (``0\\r\\n\\r\\n``) soon after
intake stops (SIGTERM + 1 s). The stalled one cannot end cleanly either way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack import FAILS, ROOT, check, connect, read_stream, sse_request, start


async def run(proc: object, port: int) -> None:
    good = [await connect(port, proc) for _ in range(4)]  # (the server is up)
    stalled = []
    for _, w in good:  # stalled and reading streams made in turn (uvicorn's task set order)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(sse_request("/events?size=200000", True))  # never read
        stalled.append(sock)
        w.write(sse_request("/events", True))
    await asyncio.sleep(3)  # the stalled ones' buffers fill (~4 MB/s each)
    for r, _ in good:
        await asyncio.wait_for(r.readuntil(b"data: 2"), 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    ends = await asyncio.gather(*(read_stream(r, 20) for r, _ in good))
    clean = 0
    for data, how in ends:
        ok = how == "eof" and data.endswith(b"0\r\n\r\n")
        clean += ok
        print(f"INFO reader's stream: {how}, clean end {ok}, tail {data[-10:]!r}")
    print(f"INFO read until +{time.monotonic() - t0:.1f} s")
    check(clean == 4, "the 4 readers' streams ended cleanly", clean)
    for sock in stalled:
        sock.close()
    for _, w in good:
        w.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", default=str(ROOT))
    a = p.parse_args()
    log = tempfile.mktemp(prefix="gapp-", suffix=".log")
    proc, port = start(Path(a.code), "UvicornWorker", "app", log, 1, [])
    try:
        asyncio.run(run(proc, port))
        _out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"INFO master exit {proc.returncode} (1 expected either way: the stalled stream)")
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
