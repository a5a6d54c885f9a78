"""WSGI apps for tests/test_wsgi_lean_servers.py: a streamed body, and this worker's count.

``/stream?n=N&ms=M`` streams N chunks, M ms apart (no ``Content-Length``);
``/count`` answers this gunicorn worker's in-flight count (itself included);
anything else answers ``ok`` at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from spotgrace._http._prefork import current


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/stream":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        n, ms = int(query.get("n", ["10"])[0]), int(query.get("ms", ["100"])[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _chunks(n, ms)
    body = b"ok"
    if path == "/count":
        grace = current()
        body = str(grace.inflight_count if grace is not None else -1).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _chunks(n: int, ms: int) -> Iterator[bytes]:
    for i in range(n):
        time.sleep(ms / 1000)
        yield b"chunk %d\n" % i
