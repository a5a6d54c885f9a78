"""Load across SIGTERM on a real server: hey against waitress / gunicorn (Flask or Django).

The notice comes 2 s into a 4.5 s hey run; drain_delay (lame duck) is 3 s, so
hey ends before intake stops: every request should be a 200 (those answered
from the notice with Connection: close), no 500, no reset. Then the process
must exit 0 with the drain clean.
Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/server_load.py waitress 8 flask
     (servers: waitress N | gthread N | sync N; apps: flask | django | stream)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

APPS = textwrap.dedent(
    """
    import time
    from flask import Flask, Response

    flask_app = Flask("x")

    @flask_app.get("/")
    def index():
        time.sleep(0.003)
        return "hi\\n"

    def stream_app(environ, start_response):
        def gen():  # start_response late, in the generator; a long body
            start_response("200 OK", [("Content-Type", "text/plain")])
            for _ in range(5):
                time.sleep(0.002)
                yield b"x" * 100
        return gen()

    import django
    from django.conf import settings
    settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                       SECRET_KEY="x", MIDDLEWARE=[])
    django.setup()
    from django.http import HttpResponse
    from django.urls import path
    def dj(request):
        time.sleep(0.003)
        return HttpResponse(b"hi\\n")
    urlpatterns = [path("", dj)]
    from django.core.wsgi import get_wsgi_application
    django_app = get_wsgi_application()
    PICK = {"flask": flask_app, "django": django_app, "stream": stream_app}
    """
)

WAITRESS = textwrap.dedent(
    """
    import sys, threading, os
    sys.path.insert(0, os.path.dirname(sys.argv[0]) if sys.argv[0] else ".")
    import spotgrace
    from spotgrace.wsgi import GraceMiddleware
    from waitress import create_server
    from apps import PICK

    @spotgrace.on_shutdown
    def stats():
        print("STATS", grace.statistics()["inflight"], flush=True)

    with spotgrace.graceful(stop_timeout=20, drain_delay=3) as grace:
        server = create_server(GraceMiddleware(PICK[sys.argv[3]], grace=grace),
                               host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]))
        threading.Thread(target=server.run, daemon=True).start()
        print("serving", flush=True)
        grace.wait()
    """
)


def main() -> None:
    kind, n, appname = sys.argv[1], sys.argv[2], sys.argv[3]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "apps.py").write_text(APPS)
    (tmp / "serve_waitress.py").write_text(WAITRESS)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, PYTHONPATH=f"{tmp}:{os.environ.get('PYTHONPATH', '')}")
    if kind == "waitress":
        cmd = [sys.executable, str(tmp / "serve_waitress.py"), str(port), n, appname]
    else:
        env["SPOTGRACE_DRAIN_DELAY"] = "3"
        env["SPOTGRACE_STOP_TIMEOUT"] = "20"
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:spotgrace.gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "-k",
            kind,
            *(["--threads", n] if kind == "gthread" else []),
            "--graceful-timeout",
            "15",
            f"apps:{appname}_app",
        ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True).start()
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    hey = subprocess.Popen(
        ["hey", "-z", "4.5s", "-c", "16", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGTERM)
    report, _ = hey.communicate(timeout=30)
    rc = proc.wait(40)
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)
    errors = (
        report.split("Error distribution:")[1].strip() if "Error distribution" in report else ""
    )
    text = "".join(out)
    print(f"{kind} {n} {appname}: status {codes}; errors: {errors[:400] or 'none'}; exit {rc}")
    bad = [
        ln
        for ln in text.splitlines()
        if "Traceback" in ln
        or "hop-by-hop" in ln
        or "drain.timeout" in ln
        or "Error" in ln
        or "STATS" in ln
    ]
    bad += [ln for ln in text.splitlines() if "shutdown." in ln or "drain." in ln]
    for ln in bad[:14]:
        print("   server:", ln[:220])


if __name__ == "__main__":
    main()
