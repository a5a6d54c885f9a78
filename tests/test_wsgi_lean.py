"""spotgrace.wsgi.GraceMiddleware's lean path before the notice (issue 13), in process.

Before the notice a request under a spotgrace ``Grace`` is listed in the
middleware's book, not counted; the notice (in the thread that takes it)
counts those still listed, and each leaves the tracker exactly once. These
tests force every interleaving of a request's end with the notice's count
(hooks in the tracker and in the book's dicts run the other side at the exact
point), then race real threads. The real-server tests are in
``tests/test_wsgi_lean_servers.py``.
"""

from __future__ import annotations

import gc
import io
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import spotgrace
from spotgrace._core._inflight import InflightTracker
from spotgrace._http._prefork import SharedState, WorkerGrace
from spotgrace.wsgi import GraceMiddleware

from .test_wsgi import Recorder


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def lean_grace(**options: Any) -> Any:
    return spotgrace.graceful(signals=(), exit_code="return", drain_delay=10, **options)


class HookTracker(InflightTracker):
    """A tracker that runs ``hook`` once, right after its first ``enter``, and counts exits."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = hook
        self.exits = 0

    def enter(self, task: Any) -> None:
        super().enter(task)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()

    def exit(self, task: Any) -> None:
        self.exits += 1
        super().exit(task)


class HookDict(dict[int, Any]):
    """``held`` with a hook run once, right after the first item is set."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = hook

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()


def test_before_the_notice_a_request_is_listed_not_counted() -> None:
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        body: Any = mw({"PATH_INFO": "/x"}, Recorder())
        assert grace.statistics()["inflight"] == 0
        assert len(mw._book.live) == 1
        body.close()
        assert not mw._book.live
        assert grace.statistics()["inflight_total"] == 0


def test_a_request_ending_after_the_notice_leaves_once() -> None:
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        body: Any = mw({"PATH_INFO": "/x"}, Recorder())
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1  # counted before request_shutdown returned
        body.close()
        body.close()
        del body
        gc.collect()
        assert grace.statistics()["inflight"] == 0
        assert not mw._book.held


def test_a_request_ending_while_the_notice_enters_it_leaves_once() -> None:
    # The request ends after the notice listed it and before the notice holds it:
    # it sees nothing held, so the notice (which finds it gone from live) leaves for it.
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        body: Any = mw({"PATH_INFO": "/x"}, Recorder())
        tracker = HookTracker(body.close)
        mw._book.at_notice(tracker)
        assert tracker.count == 0
        assert tracker.exits == 1
        body.close()
        assert tracker.exits == 1


def test_a_request_ending_after_it_is_held_leaves_once_not_twice() -> None:
    # The request ends between the notice's hold and its check of live: the request
    # finds itself held and leaves; the notice finds it gone but nothing to release.
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        body: Any = mw({"PATH_INFO": "/x"}, Recorder())
        mw._book.held = HookDict(body.close)
        tracker = HookTracker(lambda: None)
        mw._book.at_notice(tracker)
        assert tracker.count == 0
        assert tracker.exits == 1
        del body
        gc.collect()
        assert tracker.exits == 1


def test_a_request_listed_as_the_gate_closes_is_counted_without_a_dip() -> None:
    # The notice comes between the request's listing and its second look at the
    # gate: the notice counts it, then it takes the full path, and leaves its
    # book only once the full path has counted it (the count never drops to 0).
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        seen: list[int] = []
        tracker = grace._c.tracker
        exit_ = tracker.exit

        def exit_seeing(task: Any) -> None:
            exit_(task)
            seen.append(tracker.count)

        tracker.exit = exit_seeing

        class NoticeOnInsert(dict[int, None]):
            def __setitem__(self, key: int, value: None) -> None:
                super().__setitem__(key, value)
                grace.request_shutdown("test")  # the notice, right after the listing

        mw._book.live = NoticeOnInsert()
        rec = Recorder()
        body: Any = mw({"PATH_INFO": "/x"}, rec)
        assert rec.header("Connection") == "close"  # the full path: after the notice
        assert grace.statistics()["inflight"] == 1
        assert seen == [1]  # the book's count left only after the scope's came
        body.close()
        assert grace.statistics()["inflight"] == 0
        assert not mw._book.live
        assert not mw._book.held


def test_a_body_never_closed_does_not_leak_before_or_after_the_notice() -> None:
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        mw({"PATH_INFO": "/x"}, Recorder())  # dropped unclosed at once
        gc.collect()
        assert not mw._book.live
        kept: Any = mw({"PATH_INFO": "/x"}, Recorder())
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1
        del kept
        gc.collect()
        assert grace.statistics()["inflight"] == 0


def test_an_app_that_raises_leaves_its_ticket() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with lean_grace() as grace:
        mw = GraceMiddleware(broken, grace=grace)
        with pytest.raises(RuntimeError):
            mw({"PATH_INFO": "/x"}, Recorder())
        assert not mw._book.live
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 0


def test_a_file_wrapper_is_kept_and_ends_its_request_once() -> None:
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

    environ = {"PATH_INFO": "/f", "wsgi.file_wrapper": FileWrapper}
    worker = WorkerGrace(SharedState())
    kept: Any = GraceMiddleware(file_app, grace=worker)(dict(environ), Recorder())
    assert isinstance(kept, FileWrapper)
    gc.collect()
    assert worker.inflight_count == 1  # held until the server closes it
    kept.close()
    kept.close()
    assert worker.inflight_count == 0
    with lean_grace() as grace:
        mw = GraceMiddleware(file_app, grace=grace)
        gc.disable()
        try:  # dropped unclosed: freed at once (no reference cycle), it leaves the book
            mw(dict(environ), Recorder())
            assert not mw._book.live
        finally:
            gc.enable()
        result: Any = mw(dict(environ), Recorder())
        assert isinstance(result, FileWrapper)
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1
        assert b"".join(result) == b"data"
        result.close()
        result.close()
        assert closes
        assert grace.statistics()["inflight"] == 0
        dropped: Any = mw(dict(environ), Recorder())  # after the notice: the full path
        assert isinstance(dropped, FileWrapper)
        assert grace.statistics()["inflight"] == 1
        dropped.close()
        assert grace.statistics()["inflight"] == 0


def test_probes_and_interrupt_true_take_the_full_path() -> None:
    with lean_grace() as grace:
        mw = GraceMiddleware(app, grace=grace)
        rec = Recorder()
        assert b"".join(mw({"PATH_INFO": "/readyz"}, rec)) == b"ok\n"
        assert not mw._book.live
    with spotgrace.graceful(exit_code="return", interrupt=True) as grace:
        mw = GraceMiddleware(app, grace=grace)
        assert not mw._book.open  # the main thread's interrupt needs the in-flight scope
        body: Any = mw({"PATH_INFO": "/x"}, Recorder())
        assert grace.statistics()["inflight"] == 1
        body.close()


def test_made_after_the_notice_every_request_takes_the_full_path() -> None:
    with lean_grace() as grace:
        grace.request_shutdown("test")
        mw = GraceMiddleware(app, grace=grace)
        assert not mw._book.open
        rec = Recorder()
        body: Any = mw({"PATH_INFO": "/x"}, rec)
        assert rec.header("Connection") == "close"
        assert grace.statistics()["inflight"] == 1
        body.close()
        assert grace.statistics()["inflight"] == 0


@pytest.mark.timeout(60)
def test_threads_racing_the_notice_each_leave_exactly_once() -> None:
    # Many threads serve requests while another thread takes the notice; a tiny
    # switch interval makes the GIL change hands inside the protocol. Every count
    # the tracker ever shows is >= 0, and it ends at 0 with nothing held.
    chunks = [b"a", b"b", b"c"]

    def streamed(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from chunks

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            with lean_grace() as grace:
                tracker = grace._c.tracker
                lows: list[int] = []
                exit_ = tracker.exit

                def exit_low(
                    task: Any, exit_: Any = exit_, tracker: Any = tracker, lows: Any = lows
                ) -> None:
                    exit_(task)
                    lows.append(tracker.count)

                tracker.exit = exit_low
                mw = GraceMiddleware(streamed, grace=grace)
                warm = threading.Event()
                noticed = threading.Event()

                def serve(mw: Any = mw, warm: Any = warm, noticed: Any = noticed) -> None:
                    n = 0
                    while not noticed.is_set() or n < 50:  # 50 more after the notice
                        body = mw({"PATH_INFO": "/x"}, Recorder())
                        b"".join(body)
                        body.close()
                        n = n + 1 if noticed.is_set() else 0
                        warm.set()

                def notice(grace: Any = grace, warm: Any = warm, noticed: Any = noticed) -> None:
                    warm.wait(10)
                    grace.request_shutdown("race")
                    noticed.set()

                threads = [threading.Thread(target=serve) for _ in range(4)]
                threads.append(threading.Thread(target=notice))
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                assert min(lows, default=0) >= 0, lows
                assert tracker.count == 0
                assert not mw._book.live
                assert not mw._book.held
                assert grace.statistics()["inflight_total"] > 0
    finally:
        sys.setswitchinterval(old)


def test_a_worker_grace_counts_without_a_lock_and_reads_do_not_disturb() -> None:
    grace = WorkerGrace(SharedState())
    mw = GraceMiddleware(app, grace=grace)
    bodies: list[Any] = [mw({"PATH_INFO": "/x"}, Recorder()) for _ in range(3)]
    assert grace.inflight_count == 3
    assert grace.inflight_count == 3  # a read advances both counters alike
    bodies.pop().close()
    bodies.pop()  # dropped unclosed: freed, it ends the request
    gc.collect()
    assert grace.inflight_count == 1
    with grace.inflight():
        assert grace.inflight_count == 2
    bodies.pop().close()
    assert grace.inflight_count == 0

    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        GraceMiddleware(broken, grace=grace)({"PATH_INFO": "/x"}, Recorder())
    assert grace.inflight_count == 0


def test_a_worker_grace_after_the_masters_notice_takes_the_full_path() -> None:
    state = SharedState()
    grace = WorkerGrace(state)
    mw = GraceMiddleware(app, grace=grace)
    state.set_noticed()
    rec = Recorder()
    body: Any = mw({"PATH_INFO": "/x"}, rec)
    assert rec.header("Connection") == "close"
    assert grace.inflight_count == 1
    body.close()
    assert grace.inflight_count == 0
    assert mw({"PATH_INFO": "/readyz"}, Recorder()) == [b"draining\n"]
    state.set_stopping(0.0)
    rec = Recorder()
    mw({"PATH_INFO": "/x"}, rec)
    assert rec.status.startswith("503")
    assert grace.inflight_count == 0
