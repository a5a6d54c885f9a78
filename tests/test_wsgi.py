"""spotgrace.wsgi.GraceMiddleware called as a WSGI server calls it; the state shared across fork()."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from spotgrace._http._prefork import SharedState, WorkerGrace
from spotgrace.wsgi import GraceMiddleware


class FakeGrace:
    def __init__(self) -> None:
        self.ready = True
        self.stopping = False
        self.count = 0

    @contextlib.contextmanager
    def inflight(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class Recorder:
    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def call(mw: GraceMiddleware, path: str, **environ: Any) -> tuple[Recorder, bytes]:
    rec = Recorder()
    body = mw({"PATH_INFO": path, "REQUEST_METHOD": "GET", **environ}, rec)
    data = b"".join(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return rec, data


def test_readyz_is_200_until_the_notice_then_503_with_connection_close() -> None:
    grace = FakeGrace()
    mw = GraceMiddleware(app, grace=grace)
    rec, body = call(mw, "/readyz")
    assert rec.status.startswith("200")
    assert body == b"ok\n"
    assert rec.header("Connection") is None
    grace.ready = False
    rec, body = call(mw, "/readyz")
    assert rec.status.startswith("503")
    assert body == b"draining\n"
    assert rec.header("Connection") == "close"


def test_healthz_stays_200_through_the_shutdown() -> None:
    grace = FakeGrace()
    mw = GraceMiddleware(app, grace=grace)
    grace.ready, grace.stopping = False, True
    rec, _ = call(mw, "/healthz")
    assert rec.status.startswith("200")


def test_requests_get_connection_close_from_the_notice() -> None:
    grace = FakeGrace()
    mw = GraceMiddleware(app, grace=grace)
    rec, body = call(mw, "/x")
    assert body == b"hello"
    assert rec.header("Connection") is None
    grace.ready = False
    rec, body = call(mw, "/x")
    assert body == b"hello"
    assert rec.header("Connection") == "close"


def test_no_hop_by_hop_header_under_wsgiref() -> None:
    grace = FakeGrace()
    grace.ready = False
    rec, _ = call(GraceMiddleware(app, grace=grace), "/x", SERVER_SOFTWARE="WSGIServer/0.2")
    assert rec.header("Connection") is None


def test_gunicorn_response_is_force_closed() -> None:
    class Response:
        closed = False

        def force_close(self) -> None:
            self.closed = True

        def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
            return lambda data: None

    grace, resp = FakeGrace(), Response()
    grace.ready = False
    b"".join(GraceMiddleware(app, grace=grace)({"PATH_INFO": "/x"}, resp.start_response))
    assert resp.closed


def test_after_intake_closes_requests_get_503_with_retry_after() -> None:
    grace = FakeGrace()
    mw = GraceMiddleware(app, grace=grace, retry_after=7)
    grace.ready, grace.stopping = False, True
    rec, _ = call(mw, "/x")
    assert rec.status.startswith("503")
    assert rec.header("Retry-After") == "7"
    assert rec.header("Connection") == "close"


def test_a_request_is_in_flight_until_its_body_is_closed() -> None:
    grace = FakeGrace()
    mw = GraceMiddleware(app, grace=grace)
    body = mw({"PATH_INFO": "/x"}, Recorder())
    assert grace.count == 1
    assert b"".join(body) == b"hello"
    assert grace.count == 1
    body.close()  # type: ignore[attr-defined]
    assert grace.count == 0


def test_an_app_that_raises_is_not_left_in_flight() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("boom")

    grace = FakeGrace()
    with pytest.raises(RuntimeError, match="boom"):
        GraceMiddleware(broken, grace=grace)({"PATH_INFO": "/x"}, Recorder())
    assert grace.count == 0


def test_without_grace_and_without_a_prefork_master_it_says_what_to_do() -> None:
    mw = GraceMiddleware(app)
    with pytest.raises(RuntimeError, match=r"python:spotgrace\.gunicorn"):
        call(mw, "/x")


def test_bad_options_are_rejected() -> None:
    with pytest.raises(TypeError):
        GraceMiddleware("not an app", grace=FakeGrace())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="readyz"):
        GraceMiddleware(app, grace=FakeGrace(), readyz="nope")


def test_a_real_sync_grace_counts_threads_in_flight() -> None:
    import spotgrace

    with spotgrace.graceful(signals=(), exit_code="return", drain_delay=10) as grace:
        mw = GraceMiddleware(app, grace=grace)
        bodies = [mw({"PATH_INFO": "/x"}, Recorder()) for _ in range(3)]
        assert grace.statistics()["inflight"] == 0  # before the notice: listed, not counted
        grace.request_shutdown("test")  # the notice counts the three still open
        assert grace.statistics()["inflight"] == 3
        done = threading.Thread(target=lambda: [b.close() for b in bodies])  # type: ignore[attr-defined]
        done.start()
        done.join()
        assert grace.statistics()["inflight"] == 0


def _fork() -> int:
    with warnings.catch_warnings():  # 3.12+: fork() in a process with threads warns
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def test_shared_state_set_by_the_parent_is_seen_by_a_forked_child_at_once() -> None:
    state = SharedState()
    grace = WorkerGrace(state)
    assert grace.ready
    assert not grace.stopping
    read_fd, write_fd = os.pipe()
    pid = _fork()
    if pid == 0:  # the child: wait for the parent's notice, then report what it sees
        os.close(write_fd)
        os.read(read_fd, 1)
        os._exit(0 if (not grace.ready and grace.stopping and grace.remaining() < 60) else 3)
    os.close(read_fd)
    state.set_stopping(workers_deadline=time.monotonic() + 30)
    os.write(write_fd, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_a_child_reporting_failure_is_seen_by_the_parent() -> None:
    state = SharedState()
    pid = _fork()
    if pid == 0:
        state.set_worker_failed()
        os._exit(0)
    os.waitpid(pid, 0)
    assert state.worker_failed


def test_a_file_wrapper_response_is_kept_for_sendfile_and_closed_once() -> None:
    # Before the fix the middleware hid the server's wsgi.file_wrapper in its own body
    # object, so gunicorn (isinstance check) fell back to reading the file in Python.
    import io
    from wsgiref.util import FileWrapper

    closes: list[int] = []

    class File(io.BytesIO):
        def close(self) -> None:
            closes.append(1)
            super().close()

    def file_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper: Any = environ["wsgi.file_wrapper"](File(b"data"))
        return wrapper  # type: ignore[no-any-return]

    grace = FakeGrace()
    mw = GraceMiddleware(file_app, grace=grace)
    environ = {"PATH_INFO": "/f", "REQUEST_METHOD": "GET", "wsgi.file_wrapper": FileWrapper}
    result: Any = mw(environ, Recorder())
    assert isinstance(result, FileWrapper)
    assert grace.count == 1
    assert b"".join(result) == b"data"
    result.close()
    result.close()
    assert grace.count == 0
    assert closes  # the file itself was closed; the count ended once (not -1)
