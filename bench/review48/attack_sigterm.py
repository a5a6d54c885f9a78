"""Real SIGTERM to real uvicorn running GraceMiddleware alone (bench/review48/alone_app.py).

``PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review48/attack_sigterm.py SCENARIO [HTTP] [MODE]``

SCENARIO: ``inflight`` (slow requests, a BackgroundTasks request, a request that
raises, a pipelined pair, all begun before SIGTERM), ``ws`` (a WebSocket begun
before, wsproto), ``sse`` (an event stream with Accept: text/event-stream, and
one without), ``big`` (a 64 MB body read slowly, begun before SIGTERM),
``scoped`` (a request inside the app's own ``grace.inflight()`` at SIGTERM, finding 4).
MODE ``cli``/``workers``: the uvicorn CLI (LifespanGrace), one process or ``--workers 2``.
HTTP: httptools | h11. MODE: wait | eager (own uvicorn.Server) or cli.
Prints one line per check: ``OK``/``FAIL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes

ROOT = Path(__file__).resolve().parents[2]
FAILS: list[str] = []


def check(ok: bool, what: str, detail: Any = "") -> None:
    print(("OK   " if ok else "FAIL ") + what + (f"  [{detail}]" if detail != "" else ""))
    if not ok:
        FAILS.append(what)


def start(port: int, http: str, mode: str, log: str, extra_env: dict[str, str]) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALONE_LOG": log, **extra_env}
    if mode == "cli" or mode == "workers":
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.review48.alone_app:app",
            "--port",
            str(port),
            "--http",
            http,
            "--ws",
            "wsproto",
            "--log-level",
            "warning",
        ]
        if mode == "workers":
            argv += ["--workers", "2"]
        env.setdefault("SPOTGRACE_DRAIN_DELAY", extra_env.get("DELAY", "0.5"))
        env.setdefault("SPOTGRACE_STOP_TIMEOUT", extra_env.get("STOP", "10"))
    else:
        argv = [
            sys.executable,
            str(ROOT / "bench/review48/alone_app.py"),
            str(port),
            mode,
            http,
            "wsproto",
        ]
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


async def connect(port: int, proc: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    end = time.monotonic() + 30
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > end or proc.poll() is not None:
                raise
            await asyncio.sleep(0.05)


async def warm(port: int, proc: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await connect(port, proc)
    w.write(request_bytes("/work"))
    assert (await asyncio.wait_for(read_response(r), 10)).status == 200
    return r, w


def events(log: str) -> list[dict[str, Any]]:
    p = Path(log)
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


async def scenario_inflight(port: int, proc: Any, log: str) -> None:
    conns = [await warm(port, proc) for _ in range(7)]  # warm: the middleware found uvicorn
    paths = ["/work?ms=1500"] * 4 + ["/bg?ms=1500", "/raise"]
    for (_, w), path in zip(conns, paths, strict=False):
        w.write(request_bytes(path))
    r7, w7 = conns[6]
    w7.write(request_bytes("/work?ms=1000") + request_bytes("/work?ms=0"))  # pipelined
    await asyncio.sleep(0.3)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    got = [await asyncio.wait_for(read_response(r), 15) for r, _ in conns[:6]]
    first = await asyncio.wait_for(read_response(r7), 15)
    try:
        second: Any = await asyncio.wait_for(read_response(r7), 5)
    except Exception as exc:
        second = repr(exc)
    statuses = [g.status for g in got]
    check(statuses == [200] * 5 + [500], "requests begun before SIGTERM answered", statuses)
    # (/bg answered before SIGTERM: its work runs after the response)
    check(
        all(g.close for i, g in enumerate(got) if i != 4),
        "responses after SIGTERM say close",
        [g.headers.get("connection") for g in got],
    )
    check(first.status == 200 and first.close, "pipelined 1st answered with close", first.status)
    print(
        "     pipelined 2nd (read by the server before SIGTERM):", getattr(second, "status", second)
    )
    out, _ = proc.communicate(timeout=30)
    ev = events(log)
    bg = [e for e in ev if e["event"] == "bg-done"]
    check(len(bg) == 1, "BackgroundTasks work finished before exit", len(bg))
    stats = [e for e in ev if e["event"].startswith("stats")]
    print("     stats:", stats, " exit", proc.returncode, " took", round(time.time() - t0, 2))
    check(proc.returncode in (0, -15), "exit code", proc.returncode)
    if "Traceback" in out and "boom" not in out:
        print(out[-3000:])


async def scenario_scoped(port: int, proc: Any, log: str) -> None:
    await warm(port, proc)
    r, w = await connect(port, proc)
    w.write(request_bytes("/scoped?ms=800&after=1500"))
    await asyncio.sleep(0.3)  # inside the app's own grace.inflight() now
    proc.send_signal(signal.SIGTERM)
    try:
        got: Any = (await asyncio.wait_for(read_response(r), 15)).status
    except Exception as exc:
        got = repr(exc)[:80]
    check(got == 200, "request inside the app's own grace.inflight() at SIGTERM answered", got)
    proc.communicate(timeout=30)
    print("     exit", proc.returncode, [e["event"] for e in events(log)])


async def ws_handshake(port: int, proc: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await connect(port, proc)
    w.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return r, w


async def scenario_ws(port: int, proc: Any, log: str) -> None:
    await warm(port, proc)
    r, w = await ws_handshake(port, proc)
    await asyncio.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    frame = await asyncio.wait_for(r.read(64), 15)
    code = int.from_bytes(frame[2:4], "big") if frame[:1] == b"\x88" else None
    check(code == 1001, "WebSocket begun before SIGTERM closed 1001", frame[:16])
    w.close()
    proc.communicate(timeout=30)
    ev = events(log)
    print(
        "     app saw:",
        [e for e in ev if e["event"] == "ws-disconnect"],
        [e for e in ev if e["event"].startswith("stats")],
        "exit",
        proc.returncode,
    )
    check(proc.returncode in (0, -15), "exit code", proc.returncode)


async def scenario_sse(port: int, proc: Any, log: str) -> None:
    await warm(port, proc)
    r1, w1 = await connect(port, proc)
    w1.write(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    r2, w2 = await connect(port, proc)
    w2.write(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")  # no Accept (curl, fetch() streaming)
    await asyncio.wait_for(r1.readuntil(b"data: 2"), 10)
    await asyncio.wait_for(r2.readuntil(b"data: 2"), 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    async def end(r: asyncio.StreamReader) -> float:
        rest = await asyncio.wait_for(r.read(), 40)
        assert rest.endswith(b"0\r\n\r\n") or True
        return round(time.monotonic() - t0, 2)

    a, b = await asyncio.gather(end(r1), end(r2))
    print(f"     stream with Accept ended after {a} s; without Accept after {b} s")
    check(a < 3, "event stream with Accept ended at intake close", a)
    check(b < 3, "event stream without Accept ended at intake close (documented gap)", b)
    out, _ = proc.communicate(timeout=30)
    print("     ", [e for e in events(log) if e["event"] != "bg-done"], "exit", proc.returncode)
    for line in out.splitlines():
        if "drain" in line and "timeout" in line:
            print("     ", line[:200])


async def scenario_sse_late(port: int, proc: Any, log: str) -> None:
    await warm(port, proc)
    r, w = await connect(port, proc)
    w.write(b"GET /sse-late?ms=1500 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await asyncio.sleep(0.3)  # in the app's set-up: the response has not started
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(r.read(), 40)
    took = round(time.monotonic() - t0, 2)
    check(
        took < 3 and rest.endswith(b"0\r\n\r\n"),
        "event stream (Accept) begun before SIGTERM, started after it, ended at intake",
        took,
    )
    proc.communicate(timeout=30)
    print("     ", [e["event"] for e in events(log)], "exit", proc.returncode)


async def scenario_big(port: int, proc: Any, log: str) -> None:
    await warm(port, proc)
    r, w = await connect(port, proc)
    w.write(request_bytes("/big?mb=64"))
    await asyncio.sleep(0.5)  # the app has returned; most of the body sits in buffers
    proc.send_signal(signal.SIGTERM)
    got = 0
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    while True:
        chunk = await asyncio.wait_for(r.read(1 << 16), 30)
        if not chunk:
            break
        got += len(chunk)
        await asyncio.sleep(0.002)  # a slow reader
    check(got == 64 << 20, "64 MB body begun before SIGTERM arrives whole", f"{got} bytes")
    proc.communicate(timeout=30)
    print("     head:", head.split(b"\r\n")[0], "exit", proc.returncode)


async def main() -> int:
    name = sys.argv[1]
    http = sys.argv[2] if len(sys.argv) > 2 else "httptools"
    mode = sys.argv[3] if len(sys.argv) > 3 else "wait"
    port = free_port()
    log = tempfile.mktemp(prefix="alone-", suffix=".log")
    extra = {"STOP": "8", "DELAY": "0.5"} if name.startswith("sse") else {}
    proc = start(port, http, mode, log, extra)
    print(f"== {name} http={http} mode={mode}")
    try:
        await {
            "inflight": scenario_inflight,
            "ws": scenario_ws,
            "sse": scenario_sse,
            "big": scenario_big,
            "scoped": scenario_scoped,
            "sse-late": scenario_sse_late,
        }[name](port, proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            out, _ = proc.communicate()
            print("killed; output tail:", out[-2000:])
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
