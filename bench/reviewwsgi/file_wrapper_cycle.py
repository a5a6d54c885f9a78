"""A lean request whose body is waitress's own file wrapper, dropped unclosed.

The commit says "a lean file wrapper holds no cycle (freed unclosed, it leaves
at once)". hold_file() stores a closure on the wrapper that holds the
wrapper's own bound close(): with a wrapper whose close is a method (waitress's
ReadOnlyFileBasedBuffer) that is a cycle, so the ticket stays listed until the
cyclic GC runs; at a notice it is counted and the drain waits for the GC.
Run: PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/file_wrapper_cycle.py
"""

from __future__ import annotations

import gc
import io
from wsgiref.util import FileWrapper

from waitress.buffers import ReadOnlyFileBasedBuffer

import spotgrace
from spotgrace.wsgi import GraceMiddleware


def make_app(wrapper_type):
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"data"))

    return app


with spotgrace.graceful(exit_code="return", stop_timeout=6, drain_delay=2) as grace:
    for wrapper_type in (FileWrapper, ReadOnlyFileBasedBuffer):
        mw = GraceMiddleware(make_app(wrapper_type), grace=grace)
        env = {"PATH_INFO": "/f", "wsgi.file_wrapper": wrapper_type}
        gc.disable()
        try:
            mw(dict(env), lambda *a: None)  # dropped unclosed
            listed = len(mw._book.live) if hasattr(mw, "_book") else None
            count = grace.statistics()["inflight"]
        finally:
            gc.enable()
        gc.collect()
        after = len(mw._book.live) if hasattr(mw, "_book") else None
        print(
            f"{wrapper_type.__name__}: dropped unclosed -> listed {listed} "
            f"(inflight {count}); after gc.collect() listed {after}, "
            f"inflight {grace.statistics()['inflight']}"
        )

    # After the notice (the full path), and under a gunicorn worker's state (lean counters):
    from spotgrace._http._prefork import SharedState, WorkerGrace

    worker = WorkerGrace(SharedState())
    wmw = GraceMiddleware(make_app(FileWrapper), grace=worker)
    wmw({"PATH_INFO": "/f", "wsgi.file_wrapper": FileWrapper}, lambda *a: None)
    gc.collect()
    print(f"gunicorn worker, FileWrapper dropped unclosed: inflight_count {worker.inflight_count}")
    grace.request_shutdown("test")
    mw = GraceMiddleware(make_app(FileWrapper), grace=grace)
    before = grace.statistics()["inflight"]
    mw({"PATH_INFO": "/f", "wsgi.file_wrapper": FileWrapper}, lambda *a: None)
    gc.collect()
    print(
        f"after the notice, FileWrapper dropped unclosed: inflight {before} -> "
        f"{grace.statistics()['inflight']} after gc.collect()"
    )
