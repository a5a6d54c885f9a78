"""WSGI apps for the gunicorn tests: one whose worker hook fails, one that sleeps as asked."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import spotgrace


def slow(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """``/sleep?s=N`` sleeps N seconds; anything else answers at once."""
    query = environ.get("QUERY_STRING", "")
    if environ.get("PATH_INFO") == "/sleep" and query.startswith("s="):
        time.sleep(float(query[2:]))
    body = environ["wsgi.input"].read() if environ.get("REQUEST_METHOD") == "POST" else b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if os.environ.get("FAILING_HOOK"):

    @spotgrace.on_shutdown
    def failing() -> None:
        """A worker hook that fails: the master's exit code must say so."""
        raise RuntimeError("this hook fails on purpose")
