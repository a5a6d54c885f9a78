"""spotgrace.watch against the real fake endpoints on 127.0.0.1.

httpx.MockTransport is used only where the fake server cannot produce the
answer (malformed-but-parseable Spot documents: NaN, unknown actions, naive
times), and says so.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from structlog.testing import capture_logs

from spotgrace._core._errors import ConfigError
from spotgrace._metadata._fetch import Answer, async_client, fetch
from spotgrace.testing import FakeEndpoints
from spotgrace.watch import (
    Ec2Source,
    EcsSource,
    Source,
    UrlSource,
    Watcher,
    WatchNotice,
    sources_from_spec,
)

FAST = 0.05  # poll interval for tests


@pytest.fixture
def fake() -> Iterator[FakeEndpoints]:
    with FakeEndpoints() as server:
        yield server


def wait_for(cond: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


class Collector:
    def __init__(self) -> None:
        self.notices: list[WatchNotice] = []
        self.lock = threading.Lock()

    def __call__(self, notice: WatchNotice) -> None:
        with self.lock:
            self.notices.append(notice)


def running(sources: list[Source], **kw: object) -> tuple[Watcher, Collector]:
    got = Collector()
    options: dict[str, object] = {"interval": FAST, "timeout": 1.0} | kw
    watcher = Watcher(sources, on_notice=got, **options)  # type: ignore[arg-type]
    watcher.start_thread()
    return watcher, got


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- detection


def test_ecs_desired_stopped_is_a_notice_without_deadline(fake: FakeEndpoints) -> None:
    watcher, got = running([EcsSource(environ=fake.env())])
    try:
        time.sleep(0.3)
        assert got.notices == []
        fake.interrupt()
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    (notice,) = got.notices
    assert notice.source == "ecs"
    assert notice.time is None
    assert notice.within() is None
    assert "DesiredStatus=STOPPED" in notice.reason


def test_ec2_spot_notice_takes_its_deadline_from_time(fake: FakeEndpoints) -> None:
    watcher, got = running([Ec2Source(environ=fake.env())])
    try:
        fake.interrupt(warning=100.0, action="stop")
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    (notice,) = got.notices
    assert notice.source == "ec2"
    assert notice.detail["action"] == "stop"
    within = notice.within()
    assert within is not None
    assert 90.0 < within <= 100.0


def test_notice_is_delivered_once_however_often_it_is_seen(fake: FakeEndpoints) -> None:
    fake.interrupt()
    watcher, got = running([EcsSource(environ=fake.env()), Ec2Source(environ=fake.env())])
    try:
        wait_for(lambda: watcher.statistics()["ec2"]["polls"] >= 10)
    finally:
        watcher.close()
    assert sorted(n.source for n in got.notices) == ["ec2", "ecs"]


def test_url_source_notice_with_time(fake: FakeEndpoints) -> None:
    watcher, got = running([UrlSource(fake.url + "/notice", name="custom")])
    try:
        time.sleep(0.2)
        assert got.notices == []
        fake.interrupt(warning=60.0)
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    (notice,) = got.notices
    assert notice.source == "custom"
    assert notice.reason.startswith("fake interruption")
    within = notice.within()
    assert within is not None
    assert 50.0 < within <= 60.0


@pytest.mark.asyncio
async def test_runs_as_a_task_in_the_event_loop(fake: FakeEndpoints) -> None:
    got = Collector()
    watcher = Watcher([EcsSource(environ=fake.env())], on_notice=got, interval=FAST)
    task = watcher.start_task()
    try:
        await asyncio.to_thread(fake.interrupt)
        for _ in range(500):
            if got.notices:
                break
            await asyncio.sleep(0.02)
    finally:
        await watcher.aclose()
    assert task.done()
    assert len(got.notices) == 1


# ---------------------------------------------------------------- IMDSv2 token


def test_token_is_cached_across_polls(fake: FakeEndpoints) -> None:
    watcher, _ = running([Ec2Source(environ=fake.env())])
    try:
        wait_for(lambda: len(fake.requests("spot")) >= 8)
    finally:
        watcher.close()
    assert len(fake.requests("token")) == 1


def test_token_is_fetched_again_after_401(fake: FakeEndpoints) -> None:
    watcher, got = running([Ec2Source(environ=fake.env())])
    try:
        wait_for(lambda: len(fake.requests("spot")) >= 2)
        fake.expire_tokens()
        wait_for(lambda: len(fake.requests("token")) >= 2)
        fake.interrupt()
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    assert any(r.status == 401 for r in fake.requests() if r.route in ("spot", "rebalance"))
    assert watcher.statistics()["ec2"]["errors"] == 0


@pytest.mark.asyncio
async def test_token_is_refreshed_before_it_expires(fake: FakeEndpoints) -> None:
    now = [0.0]
    source = Ec2Source(environ=fake.env(), token_ttl=8, rebalance=False, clock=lambda: now[0])
    async with async_client(2.0) as client:

        async def get(method: str, url: str, *, headers: object = None) -> Answer:
            return await fetch(client, method, url, time_limit=2.0, headers=headers)  # type: ignore[arg-type]

        await source.poll(get)
        now[0] = 5.0  # ttl 8 s: still fresh
        await source.poll(get)
        assert len(fake.requests("token")) == 1
        now[0] = 6.5  # within the last quarter of the ttl: refresh first
        await source.poll(get)
    assert len(fake.requests("token")) == 2
    assert [r.status for r in fake.requests("spot")] == [404, 404, 404]


def test_token_never_appears_in_logs(fake: FakeEndpoints) -> None:
    with capture_logs() as logs:
        watcher, got = running([Ec2Source(environ=fake.env())])
        try:
            wait_for(lambda: len(fake.requests("spot")) >= 2)
            fake.expire_tokens()
            fake.fail("spot", "status", times=2)
            fake.interrupt()
            wait_for(lambda: got.notices)
        finally:
            watcher.close()
    text = json.dumps(logs, default=str)
    assert "token_refresh" in text  # the 401 path ran
    assert "watch.error" in text  # and an error was logged
    tokens = fake.tokens_issued()
    assert len(tokens) == 2
    assert not any(token in text for token in tokens)


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["status", "garbage", "wrong", "slow", "huge", "reset"])
@pytest.mark.parametrize("route", ["task", "spot"])
def test_faults_are_survived_and_detection_resumes(
    fake: FakeEndpoints, kind: str, route: str
) -> None:
    fake.fail(route, kind, times=3, delay=2.0)
    source: Source = (
        EcsSource(environ=fake.env()) if route == "task" else Ec2Source(environ=fake.env())
    )
    watcher, got = running([source], timeout=0.5, max_backoff=0.2)
    try:
        wait_for(lambda: watcher.statistics()[source.name]["errors"] >= 3)
        fake.interrupt()
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    assert len(got.notices) == 1
    assert watcher.statistics()[source.name]["errors"] == 3


def test_huge_body_is_refused_not_read(fake: FakeEndpoints) -> None:
    fake.fail("task", "huge", times=1, size=8 * 1024 * 1024)
    with capture_logs() as logs:
        watcher, _ = running([EcsSource(environ=fake.env())])
        try:
            wait_for(lambda: watcher.statistics()["ecs"]["errors"] >= 1)
        finally:
            watcher.close()
    errors = [e for e in logs if e["event"] == "watch.error"]
    assert "larger than 65536 bytes" in errors[0]["error"]


def test_warnings_are_rate_limited_and_recovery_is_logged(fake: FakeEndpoints) -> None:
    fake.fail("task", "status", times=None)
    with capture_logs() as logs:
        watcher, _ = running([EcsSource(environ=fake.env())], max_backoff=FAST)
        try:
            wait_for(lambda: watcher.statistics()["ecs"]["errors"] >= 10)
            fake.clear_faults()
            wait_for(lambda: any(e["event"] == "watch.recovered" for e in logs))
        finally:
            watcher.close()
    assert [e["event"] for e in logs].count("watch.error") == 1
    (recovered,) = [e for e in logs if e["event"] == "watch.recovered"]
    assert recovered["failures"] >= 10


def test_errors_back_off(fake: FakeEndpoints) -> None:
    fake.fail("task", "status", times=None)
    watcher, _ = running([EcsSource(environ=fake.env())], interval=0.1, max_backoff=0.8, jitter=0)
    try:
        time.sleep(2.5)
    finally:
        watcher.close()
    # Without backoff 0.1 s polls would make ~25 requests; the wait doubles, but
    # never past 2 x interval (a notice must be seen soon after recovery): ~13.
    assert 3 <= len(fake.requests("task")) <= 16


def test_a_failing_callback_does_not_stop_the_watcher(fake: FakeEndpoints) -> None:
    calls: list[WatchNotice] = []

    def explode(notice: WatchNotice) -> None:
        calls.append(notice)
        raise RuntimeError("boom")

    watcher = Watcher(
        [EcsSource(environ=fake.env()), Ec2Source(environ=fake.env())],
        on_notice=explode,
        interval=FAST,
    )
    watcher.start_thread()
    try:
        fake.interrupt()
        wait_for(lambda: len(calls) == 2)
        polls = watcher.statistics()["ecs"]["polls"]
        wait_for(lambda: watcher.statistics()["ecs"]["polls"] > polls + 3)
    finally:
        watcher.close()


# ---------------------------------------------------------------- rebalance and auto


def test_rebalance_is_passed_to_the_callback_but_is_no_shutdown(fake: FakeEndpoints) -> None:
    seen: list[WatchNotice] = []
    source = Ec2Source(environ=fake.env(), on_rebalance=seen.append)
    watcher, got = running([source])
    try:
        fake.rebalance()
        wait_for(lambda: seen)
        wait_for(lambda: len(fake.requests("rebalance")) >= 6)
    finally:
        watcher.close()
    assert len(seen) == 1
    assert seen[0].kind == "rebalance"
    assert got.notices == []


@pytest.mark.asyncio
async def test_rebalance_is_checked_on_every_nth_poll(fake: FakeEndpoints) -> None:
    source = Ec2Source(environ=fake.env(), rebalance_every=3)
    async with async_client(2.0) as client:

        async def get(method: str, url: str, *, headers: object = None) -> Answer:
            return await fetch(client, method, url, time_limit=2.0, headers=headers)  # type: ignore[arg-type]

        for _ in range(7):
            await source.poll(get)
    assert len(fake.requests("spot")) == 7
    assert len(fake.requests("rebalance")) == 3  # polls 1, 4 and 7


def test_rebalance_shuts_down_when_asked(fake: FakeEndpoints) -> None:
    watcher, got = running([Ec2Source(environ=fake.env(), shutdown_on_rebalance=True)])
    try:
        fake.rebalance()
        wait_for(lambda: got.notices)
    finally:
        watcher.close()
    assert [n.kind for n in got.notices] == ["rebalance"]


def test_auto_probe_stops_polling_where_there_is_no_imds(fake: FakeEndpoints) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    ec2 = Ec2Source(nothing, probe=True)
    with capture_logs() as logs:
        watcher, got = running([ec2, EcsSource(environ=fake.env())])
        try:
            wait_for(lambda: any(e["event"] == "watch.unavailable" for e in logs))
            fake.interrupt()
            wait_for(lambda: got.notices)
        finally:
            watcher.close()
    assert watcher.statistics()["ec2"]["polls"] == 1
    assert not any(e["event"] == "watch.error" for e in logs)


def test_sources_from_spec_auto_follows_the_environment(fake: FakeEndpoints) -> None:
    env = fake.env()
    assert [s.name for s in sources_from_spec(["auto"], environ=env)] == ["ecs", "ec2"]
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    assert [s.name for s in sources_from_spec(["auto"], environ=env)] == ["ecs"]
    assert sources_from_spec(["auto"], environ={"AWS_EC2_METADATA_DISABLED": "true"}) == []
    both = sources_from_spec(["ecs", "ec2", "ecs"], environ=fake.env())
    assert [s.name for s in both] == ["ecs", "ec2"]
    (custom,) = sources_from_spec([f"url:{fake.url}/notice"], environ={})
    assert isinstance(custom, UrlSource)


def test_imds_endpoint_follows_the_sdk_variables() -> None:
    assert Ec2Source(environ={}).endpoint == "http://169.254.169.254"
    v6 = {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}
    assert Ec2Source(environ=v6).endpoint == "http://[fd00:ec2::254]"
    local = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1234/"}
    assert Ec2Source(environ=local).endpoint == "http://127.0.0.1:1234"


# ---------------------------------------------------------------- allow-list


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.170.2/v4/abc",
        "http://169.254.169.254",
        "http://[fd00:ec2::254]",
        "http://127.0.0.1:9/x",
        "http://[::1]:9",
        "http://localhost:9",
    ],
)
def test_link_local_and_loopback_hosts_are_allowed(url: str) -> None:
    assert EcsSource(url).url.startswith(url.rstrip("/"))


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/v4/abc",
        "http://8.8.8.8",
        "http://metadata.example.com",
        "http://[fd00:ec2::253]",
        "ftp://169.254.169.254",
        "http:///nohost",
        "",
    ],
)
def test_other_hosts_are_refused_at_start(url: str) -> None:
    with pytest.raises(ConfigError):
        EcsSource(url)
    with pytest.raises(ConfigError):
        UrlSource(url)


def test_another_host_only_when_explicitly_allowed() -> None:
    with pytest.raises(ConfigError, match="allow_hosts"):
        UrlSource("http://notices.internal:8080/x")
    source = UrlSource("http://notices.internal:8080/x", allow_hosts=["notices.internal"])
    assert source.url == "http://notices.internal:8080/x"


# ---------------------------------------------------------------- strict JSON
# The fake server serves only well-formed Spot documents; these malformed ones
# come from httpx.MockTransport.


@pytest.mark.parametrize(
    "body",
    [
        b'{"action": "terminate", "time": NaN}',
        b'{"action": "explode", "time": "2026-01-01T00:02:00Z"}',
        b'{"action": "terminate", "time": "2026-01-01T00:02:00"}',
        b'{"action": "terminate", "time": "soon"}',
        b'{"action": "terminate"}',
        b'{"action": 1, "time": "2026-01-01T00:02:00Z"}',
        b"\xff\xfe",
    ],
)
def test_malformed_spot_documents_are_errors_not_notices(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/latest/api/token":
            return httpx.Response(200, text="tok")
        if request.url.path.endswith("instance-action"):
            return httpx.Response(200, content=body)
        return httpx.Response(404)

    got = Collector()
    watcher = Watcher(
        [Ec2Source("http://169.254.169.254")],
        on_notice=got,
        interval=FAST,
        transport=httpx.MockTransport(handler),
    )
    watcher.start_thread()
    try:
        wait_for(lambda: watcher.statistics()["ec2"]["errors"] >= 2)
    finally:
        watcher.close()
    assert got.notices == []


def test_notice_within_is_never_negative() -> None:
    past = WatchNotice("ec2", "x", time=datetime.now(UTC) - timedelta(seconds=30))
    assert past.within() == 0.0


# ---------------------------------------------------------------- imports


def test_import_spotgrace_does_not_import_httpx_or_aiohttp() -> None:
    code = (
        "import sys, spotgrace; "
        "bad = [m for m in ('httpx', 'aiohttp') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- graceful(watch=...)
# In-process blocks use exit_code="return": a watch notice is a platform stop,
# after which the default policy raises SystemExit and leaves the watchdog armed
# for the interpreter's exit; in a test process that would end pytest itself.
# The default policy (exit 0) is covered end to end in test_simulate.py.


def test_graceful_watch_starts_the_shutdown_with_the_notice_deadline(
    fake: FakeEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spotgrace

    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    seen: dict[str, object] = {}

    def app() -> None:
        with spotgrace.graceful(
            watch=["ec2"], watch_interval=FAST, signals=(), stop_timeout=60, exit_code="return"
        ) as grace:
            fake.interrupt(warning=20.0)
            seen["stopped"] = grace.wait(timeout=15)
            seen["notice"] = grace.notice
            seen["remaining"] = grace.remaining()

    app()
    assert seen["stopped"] is True
    notice = seen["notice"]
    assert isinstance(notice, spotgrace.Notice)
    assert notice.source == "watch"
    assert "instance-action" in notice.reason
    remaining = seen["remaining"]
    assert isinstance(remaining, float)
    assert 10.0 < remaining < 20.0  # min(60 - margin, 20 - margin): the Spot time wins


def test_graceful_watch_from_the_environment(
    fake: FakeEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spotgrace

    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPOTGRACE_WATCH", "ecs")
    monkeypatch.setenv("SPOTGRACE_WATCH_INTERVAL", str(FAST))
    seen: list[object] = []

    def app() -> None:
        with spotgrace.graceful(signals=(), exit_code="return") as grace:
            seen.extend([grace.options.watch, grace.options.watch_interval])
            fake.interrupt()
            seen.append(grace.wait(timeout=15))

    app()
    assert seen == [("ecs",), FAST, True]
    assert len(fake.requests("spot")) == 0  # only the ECS source was polled


@pytest.mark.asyncio
async def test_async_graceful_watch_polls_in_the_event_loop(
    fake: FakeEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spotgrace

    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", fake.env()["ECS_CONTAINER_METADATA_URI_V4"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    seen: list[object] = []

    async def app() -> None:
        async with spotgrace.graceful(
            watch="auto", watch_interval=FAST, signals=(), exit_code="return"
        ) as grace:
            seen.append({t.get_name() for t in asyncio.all_tasks()})
            await asyncio.to_thread(fake.interrupt)
            seen.append(await grace.wait(timeout=15))

    await app()
    assert "spotgrace-watch" in seen[0]  # type: ignore[operator]
    assert seen[1] is True
    assert not any(t.get_name() == "spotgrace-watch" for t in asyncio.all_tasks())


def test_graceful_without_watch_polls_nothing(
    fake: FakeEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spotgrace

    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    with spotgrace.graceful(signals=()) as grace:
        assert grace.options.watch == ()
        time.sleep(0.3)
    assert fake.requests() == []


def test_watcher_thread_stops_with_the_block(
    fake: FakeEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spotgrace

    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", fake.env()["ECS_CONTAINER_METADATA_URI_V4"])
    with spotgrace.graceful(watch="ecs", watch_interval=FAST, signals=()):
        wait_for(lambda: len(fake.requests("task")) >= 2)
    assert not any(t.name == "spotgrace-watch" for t in threading.enumerate())
    polls = len(fake.requests("task"))
    time.sleep(0.3)
    assert len(fake.requests("task")) == polls


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"watch": "gce"}, "unknown source"),
        ({"watch": "url:http://198.51.100.7/notice"}, "refusing to contact"),
        ({"watch": ["ecs", 42]}, "not a source"),
        ({"watch_interval": 0}, "watch_interval"),
        ({"watch_interval": -1}, "watch_interval"),
    ],
)
def test_bad_watch_options_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    import spotgrace

    with pytest.raises(ConfigError, match=message):
        spotgrace.graceful(**kwargs)  # type: ignore[arg-type]


def test_bad_ecs_variable_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import spotgrace

    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://198.51.100.7/v4/x")
    before = signal.getsignal(signal.SIGTERM)
    block = spotgrace.graceful(watch="ecs")
    with pytest.raises(ConfigError, match="ECS_CONTAINER_METADATA_URI_V4"):
        block.__enter__()
    assert signal.getsignal(signal.SIGTERM) is before  # refused before installing anything
