"""werkzeug's dev server (threaded) and wsgiref (threaded) across a real SIGTERM.

A streamed body (start_response late, in the generator) starts before the
notice and ends 2 s later; during the lame duck a new request is made; the
drain must wait for the stream, the stream must arrive whole, the process must
exit 0 with inflight 0.
Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/devservers.py werkzeug|wsgiref
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

SERVER = textwrap.dedent(
    """
    import sys, threading, time
    import spotgrace
    from spotgrace.wsgi import GraceMiddleware

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            def gen():
                start_response("200 OK", [("Content-Type", "text/plain")])
                for _ in range(20):
                    time.sleep(0.1)
                    yield b"x" * 10
            return gen()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"hi\\n"]

    @spotgrace.on_shutdown
    def stats():
        print("STATS inflight", grace.statistics()["inflight"], flush=True)

    with spotgrace.graceful(stop_timeout=20, drain_delay=1) as grace:
        mw = GraceMiddleware(app, grace=grace)
        port = int(sys.argv[1])
        if sys.argv[2] == "werkzeug":
            from werkzeug.serving import make_server
            server = make_server("127.0.0.1", port, mw, threaded=True)
        else:
            from socketserver import ThreadingMixIn
            from wsgiref.simple_server import WSGIServer, make_server
            class S(ThreadingMixIn, WSGIServer):
                daemon_threads = True
            server = make_server("127.0.0.1", port, mw, server_class=S)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print("serving", flush=True)
        grace.wait()
        server.shutdown()
    """
)


def main() -> None:
    kind = sys.argv[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    got: list[object] = []

    def slow() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", "/slow")
        r = conn.getresponse()
        got.append((r.status, len(r.read())))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/x")
    r = conn.getresponse()
    r.read()
    print(f"{kind}: lame-duck request {r.status}, Connection: {r.getheader('Connection')}")
    t.join()
    print(f"{kind}: stream begun before the notice: {got}")
    out = proc.communicate(timeout=30)[0]
    print(f"{kind}: exit {proc.returncode}")
    for ln in out.splitlines():
        if any(
            k in ln for k in ("STATS", "drain.finished", "shutdown.started", "Traceback", "Error")
        ):
            print("   server:", ln[:200])


if __name__ == "__main__":
    main()
