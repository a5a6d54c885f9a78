"""examples/queue_worker.py against a real Redis: SIGTERM and kill -9 lose no message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ._redis import redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures

WORKER = Path(__file__).parent.parent / "examples" / "queue_worker.py"
COUNT = 100

pytestmark = pytest.mark.slow


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:  # never leave a worker behind
        if p.poll() is None:
            p.kill()
        p.communicate()


def _run(redis_url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(WORKER), *args, "--redis-url", redis_url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout


def _start(
    procs: list[subprocess.Popen[str]], redis_url: str, consumer: str, *args: str
) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, str(WORKER), "work", "--redis-url", redis_url,
         "--consumer", consumer, "--block", "0.5", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SPOTGRACE_STOP_TIMEOUT": "30"},
    )  # fmt: skip
    procs.append(p)
    return p


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(p: subprocess.Popen[str]) -> tuple[int, str, str]:
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def _results(client: redis.Redis) -> list[str]:
    return list(client.lrange("jobs:results", 0, -1))


def test_sigterm_mid_stream_finishes_messages_in_hand_and_restart_loses_none(
    redis_url: str, client: redis.Redis, procs: list[subprocess.Popen[str]]
) -> None:
    _run(redis_url, "produce", "--count", str(COUNT))
    worker = _start(procs, redis_url, "w1", "--work-seconds", "0.03", "--batch", "5")
    _wait_for(lambda: client.llen("jobs:results") >= 12, "the first results")
    code, out, err = _stop(worker)
    assert code == 0, err
    assert "stopping after" in out
    first = _results(client)
    assert 12 <= len(first) < COUNT, "SIGTERM should land mid-stream"
    # Nothing was left in hand: every message the worker read was processed and acked.
    assert client.xpending("jobs", "workers")["pending"] == 0
    assert len(first) % 5 == 0  # whole batches: the one in hand was finished

    restarted = _start(procs, redis_url, "w2", "--work-seconds", "0.001")
    _wait_for(lambda: client.llen("jobs:results") >= COUNT, "all results")
    code, _out, err = _stop(restarted)
    assert code == 0, err
    results = _results(client)
    assert sorted(results, key=int) == [str(i) for i in range(COUNT)]  # all, none twice
    assert client.xpending("jobs", "workers")["pending"] == 0


def test_kill_9_with_messages_in_hand_they_are_claimed_and_processed(
    redis_url: str, client: redis.Redis, procs: list[subprocess.Popen[str]]
) -> None:
    _run(redis_url, "produce", "--count", "40")
    doomed = _start(procs, redis_url, "doomed", "--work-seconds", "0.2", "--batch", "5")
    _wait_for(lambda: client.llen("jobs:results") >= 1, "the first result")
    doomed.kill()
    doomed.communicate()
    in_hand = client.xpending("jobs", "workers")["pending"]
    assert in_hand > 0, "the killed worker should have had messages in hand"

    rescuer = _start(procs, redis_url, "rescuer", "--work-seconds", "0.001", "--claim-idle", "0.3")
    _wait_for(lambda: client.llen("jobs:results") >= 40, "all results")
    code, _out, err = _stop(rescuer)
    assert code == 0, err
    assert sorted(_results(client), key=int) == [str(i) for i in range(40)]
    assert client.xpending("jobs", "workers")["pending"] == 0


def test_restart_under_the_same_name_takes_its_own_pending_first(
    redis_url: str, client: redis.Redis, procs: list[subprocess.Popen[str]]
) -> None:
    _run(redis_url, "produce", "--count", "20")
    doomed = _start(procs, redis_url, "same", "--work-seconds", "0.2", "--batch", "5")
    _wait_for(lambda: client.llen("jobs:results") >= 1, "the first result")
    doomed.kill()
    doomed.communicate()
    assert client.xpending("jobs", "workers")["pending"] > 0
    # A long claim-idle: only reading its own pending list can recover these.
    again = _start(procs, redis_url, "same", "--work-seconds", "0.001", "--claim-idle", "3600")
    _wait_for(lambda: client.llen("jobs:results") >= 20, "all results")
    code, _out, err = _stop(again)
    assert code == 0, err
    assert sorted(_results(client), key=int) == [str(i) for i in range(20)]


def test_sigterm_puts_back_messages_in_hand_that_would_not_fit_in_the_budget(
    redis_url: str, client: redis.Redis, procs: list[subprocess.Popen[str]]
) -> None:
    _run(redis_url, "produce", "--count", str(COUNT))
    # A 50-message batch takes 2.5 s; every message claims it may take 1000 s,
    # so after the notice none of those still in hand may be started.
    worker = _start(procs, redis_url, "w1", "--work-seconds", "0.05", "--batch", "50",
                    "--max-work-seconds", "1000")  # fmt: skip
    _wait_for(lambda: client.llen("jobs:results") >= 2, "the first results")
    code, out, err = _stop(worker)
    assert code == 0, err
    done = len(_results(client))
    put_back = int(out.split(" put back")[0].rsplit(" ", 1)[1])
    assert put_back > 0, out
    assert done + put_back == 50  # the rest of the first batch went back, not processed
    assert client.xpending("jobs", "workers")["pending"] == 0
    assert client.xlen("jobs") == COUNT + put_back  # re-added, originals acked

    restarted = _start(procs, redis_url, "w2", "--work-seconds", "0.001")
    _wait_for(lambda: client.llen("jobs:results") >= COUNT, "all results")
    code, _out, err = _stop(restarted)
    assert code == 0, err
    assert sorted(_results(client), key=int) == [str(i) for i in range(COUNT)]
