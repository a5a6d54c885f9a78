"""Requests begun before SIGTERM, answered after it (the response prepared after the
notice must say Connection: close), on /slow, /sub/slow, /slow?clone; probes after."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from bench.harness import free_port
from bench.loadclient import fetch, read_response, request_bytes


async def main(variant: str) -> int:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "bench/review13/aio_server.py",
        str(port),
        variant,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    end = time.monotonic() + 20
    while True:
        try:
            r = await fetch("127.0.0.1", port, "/slow?ms=0")
            break
        except OSError:
            assert time.monotonic() < end
            await asyncio.sleep(0.1)
    print(
        "before:",
        r.status,
        r.headers.get("x-class"),
        r.headers.get("x-made"),
        "close" if r.close else "keep",
    )
    paths = ["/slow?ms=800", "/sub/slow?ms=800", "/slow?ms=800&clone=1"]
    conns = []
    for p in paths:
        rd, wr = await asyncio.open_connection("127.0.0.1", port)
        wr.write(request_bytes("/slow?ms=0"))
        warm = await read_response(rd)
        assert not warm.close
        wr.write(request_bytes(p))
        conns.append((p, rd, wr))
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    bad = 0
    for p, rd, wr in conns:
        r = await asyncio.wait_for(read_response(rd), 10)
        ok = r.status == 200 and r.close
        bad += not ok
        print(
            f"{p}: {r.status} class={r.headers.get('x-class')} made={r.headers.get('x-made')} close={r.close}"
        )
        wr.close()
    ready = await fetch("127.0.0.1", port, "/readyz")
    print("readyz during lame duck:", ready.status, "close" if ready.close else "keep")
    bad += ready.status != 503
    await asyncio.sleep(1.6)
    try:
        late = await fetch("127.0.0.1", port, "/slow?ms=0")
        print("after intake closed:", late.status)
    except OSError as exc:
        print("after intake closed: refused", repr(exc)[:60])
    out = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
    code = await proc.wait()
    print("exit", code, "| shutdown.finished clean=True" in out or ("clean=True" in out))
    bad += code != 0
    return bad


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
