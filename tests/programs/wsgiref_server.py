"""docs/wsgi.md's one-process recipe: wsgiref (threaded) + GraceMiddleware inside graceful().

python tests/programs/wsgiref_server.py PORT
"""

from __future__ import annotations

import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

import spotgrace
from spotgrace.wsgi import GraceMiddleware

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wsgi_apps import slow


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@spotgrace.on_shutdown
def bye() -> None:
    print("hook: ran", flush=True)


with spotgrace.graceful() as grace:
    server = make_server(
        "127.0.0.1", int(sys.argv[1]), GraceMiddleware(slow, grace=grace), server_class=Server
    )
    threading.Thread(target=lambda: (grace.wait(), server.shutdown()), daemon=True).start()
    print("serving", flush=True)
    server.serve_forever()
