"""Issue 10, items 8 and 9: margins the exit path cannot honour; early warning after a fault."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

import spotgrace
from spotgrace.testing import FakeEndpoints
from spotgrace.watch import Ec2Source, UrlSource, Watcher, WatchNotice

# ------------------------------------------------------------------ item 8


@pytest.mark.parametrize("margin", [0, 0.05, 0.19])
def test_margin_below_what_the_exit_needs_is_refused(margin: float) -> None:
    with pytest.raises(spotgrace.ConfigError, match=r"margin .* at least 0.2 s"):
        spotgrace.graceful(stop_timeout=2, margin=margin)


def test_margin_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTGRACE_MARGIN", "0")
    with pytest.raises(spotgrace.ConfigError, match="SPOTGRACE_MARGIN"):
        spotgrace.graceful(stop_timeout=2)


def test_a_budget_too_small_for_any_hook_is_refused_and_explained() -> None:
    # stop_timeout 0.6 -> default margin 0.5 -> 0.1 s for the drain and every hook.
    with pytest.raises(spotgrace.ConfigError, match=r"every hook would be skipped"):
        spotgrace.graceful(stop_timeout=0.6)
    assert spotgrace.graceful(stop_timeout=1.0) is not None  # 0.5 s: still accepted


# ------------------------------------------------------------------ item 9


class _Got:
    def __init__(self) -> None:
        self.at: list[float] = []
        self.cond = threading.Condition()

    def __call__(self, notice: WatchNotice) -> None:
        with self.cond:
            self.at.append(time.monotonic())
            self.cond.notify_all()


@pytest.fixture
def fake() -> Iterator[FakeEndpoints]:
    with FakeEndpoints(launch_type="EC2") as f:
        yield f


def test_a_notice_is_seen_within_two_intervals_once_the_endpoint_recovers(
    fake: FakeEndpoints,
) -> None:
    interval = 0.5
    fake.fail("spot", "status", times=None)
    got = _Got()
    watcher = Watcher(
        [Ec2Source(environ=fake.env())], on_notice=got, interval=interval, timeout=1.0, jitter=0
    )
    watcher.start_thread()
    try:
        time.sleep(4.0)  # ~5 failures: the backoff has grown as far as it goes
        seen = len(fake.requests("spot"))
        end = time.monotonic() + 10
        while len(fake.requests("spot")) == seen and time.monotonic() < end:
            time.sleep(0.005)  # right after a failed poll: the longest wait follows
        fake.clear_faults()
        fake.interrupt()
        shown = time.monotonic()
        with got.cond:
            assert got.cond.wait_for(lambda: got.at, timeout=10)
        took = got.at[0] - shown
    finally:
        watcher.close()
    # Two intervals plus a request's time; the old backoff (6 x interval) took 3 s.
    assert took < 2 * interval + 0.6, f"notice seen {took:.2f}s after it appeared"


class _WithinHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"reason": "drain", "within": 100}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_url_notice_with_within_is_delivered_and_logged_once() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WithinHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got = _Got()
    url = f"http://127.0.0.1:{server.server_address[1]}/notice"
    try:
        with capture_logs() as logs:
            watcher = Watcher([UrlSource(url)], on_notice=got, interval=0.05, timeout=1.0)
            watcher.start_thread()
            try:
                time.sleep(1.0)  # ~20 polls, each answering "within 100 s" anew
            finally:
                watcher.close()
    finally:
        server.shutdown()
        server.server_close()
    assert watcher.statistics()["url"]["polls"] >= 5
    assert len(got.at) == 1
    assert [e["event"] for e in logs].count("watch.notice") == 1
