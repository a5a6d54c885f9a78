"""waitress: GraceMiddleware inside a middleware that wraps start_response.

The waitress fix finds waitress's task in the closure of the start_response
the middleware is given. An outer middleware that wraps start_response (a
timing header, sentry_sdk's SentryWsgiMiddleware, ...) hides it: the fallback
adds a Connection header, which waitress refuses -> 500 for every response
from the notice until intake stops.
Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/waitress_outer.py [outer|plain]
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent(
    """
    import sys, threading
    import spotgrace
    from flask import Flask
    from spotgrace.wsgi import GraceMiddleware
    from waitress import create_server

    flask_app = Flask("x")

    @flask_app.get("/hello")
    def hello():
        return "hi\\n"

    def timing(app):  # an ordinary outer middleware: adds a header
        def wrapped(environ, start_response):
            def sr(status, headers, exc_info=None):
                return start_response(status, [*headers, ("X-Took", "1")], exc_info)
            return app(environ, sr)
        return wrapped

    with spotgrace.graceful(stop_timeout=20, drain_delay=3) as grace:
        app = GraceMiddleware(flask_app, grace=grace)
        if sys.argv[2] == "outer":
            app = timing(app)
        server = create_server(app, host="127.0.0.1", port=int(sys.argv[1]), threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        print("serving", flush=True)
        grace.wait()
    """
)


def get(port: int) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/hello")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, resp.getheader("Connection")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "outer"
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    print("before notice:", get(port))
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    print("after notice (lame duck):", get(port))
    proc.wait(30)
    err = proc.stderr.read() if proc.stderr else ""
    print("server stderr mentions hop-by-hop:", "hop-by-hop" in err)
    for line in err.splitlines():
        if "hop-by-hop" in line:
            print("  ", line.strip()[:200])
            break


if __name__ == "__main__":
    main()
