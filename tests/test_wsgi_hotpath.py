"""spotgrace.wsgi.GraceMiddleware's hot path (issue 13): the contract through a real Grace.

The middleware reads readiness from the coordinator's attribute, reads ``stopping`` only
once readiness is red, and reuses spotgrace's stateless in-flight scope: the notice, the
503 after intake and the in-flight count must behave as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import spotgrace
from spotgrace._http._prefork import SharedState, WorkerGrace
from spotgrace.wsgi import GraceMiddleware

from .test_wsgi import Recorder


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def served(mw: GraceMiddleware, path: str = "/x") -> tuple[Recorder, bytes]:
    rec = Recorder()
    body = mw({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, rec)
    data = b"".join(body)
    close = getattr(body, "close", None)  # a probe's or a 503's body is a list
    if close is not None:
        close()
    return rec, data


def test_a_real_grace_from_ready_to_notice_to_stopping() -> None:
    with spotgrace.graceful(signals=(), exit_code="return", drain_delay=10) as grace:
        mw = GraceMiddleware(app, grace=grace)
        rec, data = served(mw)
        assert (rec.status, data, rec.header("Connection")) == ("200 OK", b"hello", None)
        held = mw({"PATH_INFO": "/x"}, Recorder())  # in flight across the notice
        grace.request_shutdown("test")  # the notice; intake stays open for the lame duck
        assert not grace.ready
        assert not grace.stopping
        rec, data = served(mw)
        assert (rec.status, data, rec.header("Connection")) == ("200 OK", b"hello", "close")
        assert served(mw, "/readyz")[0].status.startswith("503")
        assert grace.statistics()["inflight"] == 1
        grace._c.set_stopping()  # the end of the lame duck, now
        rec, data = served(mw)
        assert rec.status.startswith("503")
        assert rec.header("Retry-After") == "5"
        assert grace.statistics()["inflight"] == 1  # a 503 is never counted
        held.close()  # type: ignore[attr-defined]
        assert grace.statistics()["inflight"] == 0
        # The first request began and ended before the notice: listed, never counted.
        assert grace.statistics()["inflight_total"] == 2


def test_one_scope_serves_every_request_and_counts_each() -> None:
    with spotgrace.graceful(signals=(), exit_code="return", drain_delay=10) as grace:
        mw = GraceMiddleware(app, grace=grace)
        bodies = [mw({"PATH_INFO": "/x"}, Recorder()) for _ in range(4)]
        grace.request_shutdown("test")  # the notice counts the lean requests still open
        assert grace.statistics()["inflight"] == 4
        for i, body in enumerate(bodies):
            body.close()  # type: ignore[attr-defined]
            body.close()  # type: ignore[attr-defined]  # twice: counted once
            assert grace.statistics()["inflight"] == 3 - i


def test_a_worker_grace_counts_overlapping_requests() -> None:
    grace = WorkerGrace(SharedState())
    assert grace.inflight() is grace.inflight()  # stateless: one for every request
    mw = GraceMiddleware(app, grace=grace)
    a = mw({"PATH_INFO": "/x"}, Recorder())
    b = mw({"PATH_INFO": "/x"}, Recorder())
    assert grace.inflight_count == 2
    a.close()  # type: ignore[attr-defined]
    b.close()  # type: ignore[attr-defined]
    assert grace.inflight_count == 0


def test_a_grace_whose_scope_is_single_use_gets_a_new_one_per_request() -> None:
    class OneShot:
        ready = True
        stopping = False
        made = 0

        @contextlib.contextmanager
        def inflight(self) -> Iterator[None]:  # a generator context manager: single use
            OneShot.made += 1
            yield

    mw = GraceMiddleware(app, grace=OneShot())
    for _ in range(3):
        assert served(mw)[1] == b"hello"
    assert OneShot.made == 3
