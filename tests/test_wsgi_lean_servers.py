"""The WSGI lean path behind real servers, with a real SIGTERM (issue 13).

A request whose streamed body began before the notice and ends after it must
keep the drain waiting and leave the in-flight count exactly once: waitress in
one process (``GraceMiddleware(app, grace=grace)``, the block leaving as soon as
intake stops, so only the drain keeps the process serving), and a gunicorn
gthread worker (``spotgrace.gunicorn``: the middleware on the master's shared
state, ``grace=None``).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.harness import free_port

from .test_gunicorn import gunicorn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

_WAITRESS = textwrap.dedent(
    """
    import json, sys, threading
    sys.path.insert(0, sys.argv[2])
    import spotgrace
    from spotgrace.wsgi import GraceMiddleware
    from waitress import create_server
    from wsgi_lean_apps import app

    @spotgrace.on_shutdown
    def stats():  # a cleanup hook: after the drain
        print("STATS " + json.dumps(grace.statistics()), flush=True)

    with spotgrace.graceful(stop_timeout=15, drain_delay=0.5) as grace:
        server = create_server(GraceMiddleware(app, grace=grace), host="127.0.0.1",
                               port=int(sys.argv[1]), threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        print("serving", flush=True)
        grace.wait()  # intake stops: leave at once; only the drain keeps serving
    """
)


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _wait_up(port: int, proc: Any) -> None:
    end = time.monotonic() + 30
    while True:
        try:
            if _get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None, "the server exited"
        assert time.monotonic() < end, "the server did not start"
        time.sleep(0.05)


def _stream_in_background(port: int, path: str) -> tuple[threading.Thread, dict[str, Any]]:
    got: dict[str, Any] = {}

    def run() -> None:
        got["status"], got["headers"], got["body"] = _get(port, path)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


@pytest.mark.timeout(90)
def test_waitress_a_streamed_body_across_sigterm_is_drained_and_counted_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "waitress_lean.py"
    script.write_text(_WAITRESS)
    port = free_port()
    events = tmp_path / "events"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPOTGRACE_EVENTS_FILE": str(events)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(ROOT / "tests" / "programs")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_up(port, proc)
        assert _get(port, "/x")[0] == 200  # lean, ended before the notice: never counted
        stream, got = _stream_in_background(port, "/stream?n=12&ms=250")  # 3 s
        time.sleep(0.5)  # its body is streaming now
        proc.send_signal(15)
        time.sleep(0.2)
        ready = _get(port, "/readyz")[0]
        after = _get(port, "/x")  # in the lame duck (or, on a slow machine, after it)
        stream.join(30)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert ready == 503, out
    # waitress refuses a Connection header from an app (a 500): its task closes instead.
    assert after[0] in (200, 503), out
    assert after[1].get("connection") == "close", after
    assert got.get("status") == 200, out
    assert got["body"] == b"".join(b"chunk %d\n" % i for i in range(12)), out
    assert proc.returncode == 0, out
    stats = json.loads(out.split("STATS ", 1)[1].splitlines()[0])
    assert stats["inflight"] == 0, stats  # left exactly once: not 1, not -1
    # Counted: the stream at the notice, the request after it if it came before intake closed.
    assert stats["inflight_total"] == (2 if after[0] == 200 else 1), stats
    lines = events.read_text().splitlines()
    by_name = {e["event"]: e for e in map(json.loads, lines)}
    assert by_name["drain.started"]["inflight"] == 1, lines  # the drain waited for it
    assert by_name["shutdown.finished"]["drained"] is True, lines


@pytest.mark.timeout(90)
def test_gunicorn_worker_counts_lean_requests_and_drains_a_stream_across_sigterm() -> None:
    args = ["-c", "python:spotgrace.gunicorn", "-k", "gthread", "--threads", "4", "-w", "1"]
    args += ["--chdir", str(ROOT / "tests" / "programs"), "wsgi_lean_apps:app"]
    env = {"SPOTGRACE_DRAIN_DELAY": "0.5", "SPOTGRACE_STOP_TIMEOUT": "20"}
    with gunicorn(args, env) as g:
        assert _get(g.port, "/count")[2] == b"1"  # itself
        stream, got = _stream_in_background(g.port, "/stream?n=12&ms=250")  # 3 s
        time.sleep(0.5)
        assert _get(g.port, "/count")[2] == b"2"  # the stream and itself
        code, took = g.stop(limit=30)
        stream.join(30)
        out = g.output()
    assert got.get("status") == 200, out
    assert got["body"] == b"".join(b"chunk %d\n" % i for i in range(12)), out
    assert code == 0, out
    assert took < 25, out  # within SPOTGRACE_STOP_TIMEOUT, after the stream (about 2.5 s more)
