"""A blocking http.server in the main thread that never checks `stopping`: interrupt=True.

GET /slow takes 1 s and is in flight: it must complete before the interrupt lands.
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from _out import say

import spotgrace

spotgrace.configure_json_logging(stream=sys.stdout)


@spotgrace.on_shutdown
def closed() -> None:
    say("hook:closed")


with spotgrace.graceful(interrupt=True) as grace:

    class Handler(BaseHTTPRequestHandler):
        @grace.inflight()
        def do_GET(self) -> None:
            if self.path == "/slow":
                say("slow-start")
                time.sleep(1.0)
            if self.path == "/quit":  # an admin endpoint, in the main thread itself
                grace.request_shutdown("admin asked")
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            say(f"served {self.path}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    say(f"ready port={server.server_address[1]}")
    server.serve_forever()
say("after-block")
