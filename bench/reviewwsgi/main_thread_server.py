"""wsgiref serving in the main thread (the docs' example): SIGTERM's handler runs
between the bytecodes of a request being served in that very thread, under hey load.
Old and new alike: ~3 resets in ~5000 when hey still sends as intake stops (the docs
"In one process" example stops with server.shutdown(): the listener stays open, its
backlog is reset at exit). Not the lean path.

Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/main_thread_server.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent(
    """
    import sys, threading
    import spotgrace
    from spotgrace.wsgi import GraceMiddleware
    from wsgiref.simple_server import make_server, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *a):
            pass

    def app(environ, start_response):
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            for _ in range(50):
                yield b"x"
        return gen()

    @spotgrace.on_shutdown
    def stats():
        print("STATS inflight", grace.statistics()["inflight"], flush=True)

    with spotgrace.graceful(stop_timeout=20, drain_delay=2) as grace:
        server = make_server("127.0.0.1", int(sys.argv[1]), GraceMiddleware(app, grace=grace),
                             handler_class=Quiet)
        threading.Thread(target=lambda: (grace.wait(), server.shutdown()), daemon=True).start()
        print("serving", flush=True)
        server.serve_forever(poll_interval=0.05)
    """
)


def main() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    hey = subprocess.Popen(
        ["hey", "-z", "3s", "-c", "4", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    report = hey.communicate(timeout=30)[0]
    out = proc.communicate(timeout=30)[0]
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)
    errs = (
        report.split("Error distribution:")[1].strip()[:300]
        if "Error distribution" in report
        else "none"
    )
    print(f"wsgiref main thread: status {codes}; errors {errs}; exit {proc.returncode}")
    for ln in out.splitlines():
        if "STATS" in ln or "Traceback" in ln or "drain." in ln:
            print("   server:", ln[:200])


if __name__ == "__main__":
    main()
