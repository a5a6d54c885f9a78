"""Real SIGTERM to a real gunicorn master running spotgrace's UvicornWorker (review14).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/review14/attack.py \
        [--worker UvicornWorker|UvicornH11Worker] [--app app|wrapped] [--group] [--code DIR]

``--code DIR``: the spotgrace checkout the gunicorn processes import (default: this
worktree); point it at a ``git worktree`` of an older commit to compare.
``--group``: SIGTERM to the whole process group (a ``docker stop`` of a shell-less
group, Ctrl-C), not only the master.

Begun before SIGTERM (drain_delay 1 s, stop_timeout 15 s): slow requests, one whose
response starts after intake stopped, a pipelined pair, event streams with and without
``Accept: text/event-stream``, one whose response starts after intake stopped, a
chunked download, a request that raises, a WebSocket. During the lame duck: an event
stream (full path). After intake stopped: a request on a kept-alive connection.
Prints one line per check: ``OK``/``FAIL``/``INFO``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FAILS: list[str] = []


def check(ok: bool, what: str, detail: Any = "") -> None:
    print(("OK   " if ok else "FAIL ") + what + (f"  [{detail}]" if detail != "" else ""))
    if not ok:
        FAILS.append(what)


def start(code: Path, worker: str, app: str, log: str, workers: int, extra: list[str]) -> Any:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "GAPP_LOG": log,
        "SPOTGRACE_DRAIN_DELAY": os.environ.get("DELAY", "1.0"),
        "SPOTGRACE_STOP_TIMEOUT": os.environ.get("STOP", "15"),
    }
    argv = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    argv += ["-c", "python:spotgrace.gunicorn", "-k", f"spotgrace.gunicorn.workers.{worker}"]
    argv += ["--chdir", str(HERE), "--log-level", "info", *extra, f"gapp:{app}"]
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=str(code),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, port


async def connect(port: int, proc: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    end = time.monotonic() + 30
    while True:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request_bytes("/readyz"))
            got = await asyncio.wait_for(read_response(r), 10)
            if got.status == 200:
                return r, w
            w.close()
        except (TimeoutError, OSError, Exception):
            if time.monotonic() > end or proc.poll() is not None:
                raise
        await asyncio.sleep(0.1)


async def read_stream(r: asyncio.StreamReader, limit: float) -> tuple[bytes, str]:
    """Read until EOF or ``limit``; (bytes, how it ended)."""
    buf = b""
    end = time.monotonic() + limit
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return buf, "timeout"
        try:
            chunk = await asyncio.wait_for(r.read(65536), left)
        except TimeoutError:
            return buf, "timeout"
        except OSError as exc:
            return buf, repr(exc)
        if not chunk:
            return buf, "eof"
        buf += chunk


def sse_request(path: str, accept: bool) -> bytes:
    extra = "Accept: text/event-stream\r\n" if accept else "Accept: */*\r\n"
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def ws_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write(
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    return r, w, head


async def attack(proc: Any, port: int, group: bool, log: str, no_accept: bool = True) -> None:
    conns = [await connect(port, proc) for _ in range(10)]
    (r_slow, w_slow), (r_late, w_late), (r_pipe, w_pipe) = conns[0], conns[1], conns[2]
    (r_ev, w_ev), (r_evn, w_evn), (r_evl, w_evl) = conns[3], conns[4], conns[5]
    (r_dl, w_dl), (r_rs, w_rs), (r_lame, w_lame), (r_after, w_after) = conns[6:10]
    ws_r, ws_w, ws_head = await ws_open(port)
    check(ws_head.startswith(b"HTTP/1.1 101"), "websocket accepted", ws_head[:20])
    w_slow.write(request_bytes("/work?ms=1500"))
    w_late.write(request_bytes("/work?ms=3000"))  # its response starts after intake stopped
    w_pipe.write(request_bytes("/work?ms=1000") + request_bytes("/work?ms=0"))
    w_ev.write(sse_request("/events", True))
    # without --no-sse-without-accept: f_sse_no_accept.py's stream (the worker is killed)
    w_evn.write(sse_request("/events", not no_accept))
    w_evl.write(sse_request("/events?ms=2500", True))  # response starts after intake stopped
    w_dl.write(request_bytes("/download?n=30&ms=100"))
    w_rs.write(request_bytes("/raise"))
    await asyncio.wait_for(r_ev.readuntil(b"data: 2"), 10)
    await asyncio.wait_for(r_evn.readuntil(b"data: 2"), 10)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM) if group else proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    w_lame.write(sse_request("/events", True))  # begun in the lame duck: the full path
    await asyncio.sleep(1.7)  # intake stopped at t0 + 1 s
    w_after.write(request_bytes("/work?ms=0"))

    async def resp(r: asyncio.StreamReader) -> Any:
        try:
            return await asyncio.wait_for(read_response(r), 15)
        except Exception as exc:
            return repr(exc)[:100]

    slow, late, p1, p2, dl, rs, after = await asyncio.gather(
        resp(r_slow),
        resp(r_late),
        resp(r_pipe),
        asyncio.sleep(0),
        resp(r_dl),
        resp(r_rs),
        resp(r_after),
    )
    p2 = await resp(r_pipe)
    streams = await asyncio.gather(
        read_stream(r_ev, 15),
        read_stream(r_evn, 15),
        read_stream(r_evl, 15),
        read_stream(r_lame, 15),
        read_stream(ws_r, 15),
    )
    st = lambda x: getattr(x, "status", x)  # noqa: E731
    cl = lambda x: getattr(x, "close", None)  # noqa: E731
    check(
        st(slow) == 200 and cl(slow), "slow request: 200 + Connection: close", (st(slow), cl(slow))
    )
    check(st(late) == 200 and cl(late), "response after intake: 200 + close", (st(late), cl(late)))
    check(st(p1) == 200 and cl(p1), "pipelined 1st: 200 + close", (st(p1), cl(p1)))
    print("INFO pipelined 2nd:", st(p2), cl(p2))
    check(st(dl) == 200 and len(getattr(dl, "body", b"")) == 30000, "download whole", st(dl))
    check(st(rs) == 500, "raising request: 500", st(rs))
    check(st(after) == 503, "request after intake on a kept-alive connection: 503", st(after))
    names = ["sse Accept", "sse no Accept", "sse Accept late start", "sse lame duck", "ws"]
    for name, (data, how) in zip(names, streams, strict=True):
        ended = how == "eof" and (data.endswith(b"0\r\n\r\n") or name == "ws")
        print(f"INFO {name}: {how} after {len(data)} bytes, tail {data[-12:]!r}")
        if name == "ws":
            i = data.rfind(b"\x88")
            check(i >= 0 and data[i + 2 : i + 4] == b"\x03\xe9", "websocket closed 1001", data[i:])
        elif name != "sse no Accept":
            check(ended, f"{name}: ended (terminating chunk, EOF)", how)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        check(False, "master exited within 30 s")
    took = time.monotonic() - t0
    print(f"INFO master exit {proc.returncode} after {took:.1f} s")
    check(proc.returncode == 0, "exit code 0", proc.returncode)
    ev = [json.loads(x) for x in Path(log).read_text().splitlines()] if Path(log).exists() else []  # noqa: ASYNC240
    print("INFO app events:", [(e["event"], e.get("code")) for e in ev])
    for line in out.splitlines():
        if any(
            k in line
            for k in ("Traceback", "Error", "error", "worker_failed", "takeover", "Cancel")
        ):
            print("LOG ", line[:200])
    for w in [w for _, w in conns] + [ws_w]:
        w.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--worker", default="UvicornWorker")
    p.add_argument("--app", default="app")
    p.add_argument("--group", action="store_true")
    p.add_argument("--code", default=str(ROOT))
    p.add_argument("-w", "--workers", type=int, default=1)
    p.add_argument("--preload", action="store_true")
    p.add_argument("--no-sse-without-accept", action="store_true", help="send Accept on it too")
    a = p.parse_args()
    log = tempfile.mktemp(prefix="gapp-", suffix=".log")
    proc, port = start(
        Path(a.code), a.worker, a.app, log, a.workers, ["--preload"] if a.preload else []
    )
    try:
        asyncio.run(attack(proc, port, a.group, log, not a.no_sse_without_accept))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print("FAILS:", FAILS)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
