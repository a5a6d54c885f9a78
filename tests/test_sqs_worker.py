"""examples/sqs_worker.py (spotgrace.sqs) against a real moto server, with real signals.

Each test starts real worker processes against an SQS endpoint on 127.0.0.1
(moto in server mode) and checks the queue from outside. Visibility timeouts
are long (60 s) where a test shows that a message came back *at once*: a
message left invisible would not be seen again within the test.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import spotgrace

from ._moto import (  # noqa: F401
    SQS_EXAMPLE,
    aws_env_fixture,
    make_queue,
    moto_endpoint_fixture,
    procs_fixture,
    sqs_client,
    sqs_fixture,
    start_worker,
)
from ._proc import Proc, kill_quietly, start

pytestmark = pytest.mark.slow

_worker = start_worker


def _produce(env: dict[str, str], queue: str, *args: str) -> None:
    p = start(SQS_EXAMPLE, "produce", "--queue-url", queue, *args, env=env)
    try:
        assert p.finish(timeout=30) == 0, p.output()
    finally:
        kill_quietly(p)


def _counts(sqs: Any, queue: str) -> tuple[int, int]:
    """(visible, not visible) messages in the queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _completions(results: Path) -> list[int]:
    log = results / "completions.log"
    if not log.exists():
        return []
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def _wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _events(p: Proc, name: str) -> list[dict[str, Any]]:
    return [e for e in p.events() if e.get("event") == name]


def test_sigterm_mid_batch_puts_back_at_once_and_deletes_processed(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    results = tmp_path / "results"
    _produce(aws_env, queue, "--count", "20", "--seconds", "1.0")
    a = _worker(procs, aws_env, queue, results, "--name", "a", "--concurrency", "2",
                "--prefetch", "4", "--visibility-timeout", "60", "--wait-time", "1")  # fmt: skip
    _wait_for(lambda: len(_completions(results)) >= 2, 20, "two jobs done")
    sent = a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    took = time.monotonic() - sent
    assert took < 20, f"worker took {took:.1f}s (budget 18 s)"
    done_by_a = _completions(results)
    put_back = [i for e in _events(a, "sqs.put_back") for i in e["message_ids"]]
    assert put_back, "prefetched messages were not put back:\n" + a.output()
    # Nothing is left invisible: everything not processed is visible right now,
    # although the visibility timeout is 60 s.
    visible, hidden = _counts(sqs, queue)
    assert (visible, hidden) == (20 - len(done_by_a), 0), a.output()
    b = _worker(procs, aws_env, queue, results, "--name", "b", "--concurrency", "8",
                "--visibility-timeout", "60", "--wait-time", "1")  # fmt: skip
    _wait_for(lambda: len(_completions(results)) >= 20, 30, "all 20 jobs done")
    b.signal(signal.SIGTERM)
    assert b.finish(timeout=20) == 0, b.output()
    assert sorted(_completions(results)) == list(range(20)), "a job lost or done twice"
    assert _counts(sqs, queue) == (0, 0), "processed messages were not deleted"


def test_long_poll_delays_shutdown_by_at_most_one_poll(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    wait = 4
    a = _worker(procs, aws_env, queue, tmp_path / "r", "--wait-time", str(wait),
                "--visibility-timeout", "60")  # fmt: skip
    time.sleep(1.0)  # a poll is in progress on the empty queue
    sent = a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    took = time.monotonic() - sent
    # One poll (4 s) plus moto's 1 s wake-up tick plus noise; never a second poll.
    assert took < wait + 3, f"shutdown took {took:.1f}s with a {wait}s poll"
    assert _events(a, "sqs.stopped"), a.output()


def test_message_taken_by_the_poll_after_the_notice_is_given_back_at_once(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    a = _worker(procs, aws_env, queue, tmp_path / "r", "--wait-time", "4",
                "--visibility-timeout", "60")  # fmt: skip
    time.sleep(1.0)  # a poll is in progress on the empty queue
    a.signal(signal.SIGTERM)
    a.wait_for_line('"shutdown.stopping"', timeout=10)
    # Arrives after the notice, during the poll in progress, which takes it.
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"job": 1}))
    assert a.finish(timeout=20) == 0, a.output()
    assert [e["why"] for e in _events(a, "sqs.put_back")] == ["received after the notice"]
    assert _completions(tmp_path / "r") == [], "a message was started after the notice"
    # Visible at once, although the visibility timeout is 60 s.
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, VisibilityTimeout=30)
    assert len(got.get("Messages", [])) == 1, a.output()


def test_heartbeat_keeps_a_long_message_invisible(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    results = tmp_path / "r"
    _produce(aws_env, queue, "--count", "1", "--seconds", "5.5")
    a = _worker(procs, aws_env, queue, results, "--visibility-timeout", "2", "--wait-time", "1")
    _wait_for(lambda: _counts(sqs, queue)[1] == 1, 10, "the message in flight")
    end = time.monotonic() + 4  # 2 visibility timeouts
    while time.monotonic() < end:
        got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, VisibilityTimeout=0)
        assert not got.get("Messages"), "the message became visible while being processed"
        time.sleep(0.25)
    _wait_for(lambda: _completions(results) == [0], 15, "the long job done")
    a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    assert _counts(sqs, queue) == (0, 0)
    assert _events(a, "sqs.visibility_failed") == []


def test_never_returning_handler_is_gone_before_stop_timeout_and_named(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    _produce(aws_env, queue, "--count", "1", "--seconds", "100000")
    stop_timeout = 6.0
    a = _worker(procs, aws_env, queue, tmp_path / "r", "--visibility-timeout", "60",
                "--wait-time", "1", stop_timeout=stop_timeout)  # fmt: skip
    # Started, not only received (one received but not started is given back at once).
    a.wait_for_line("job 0 started", timeout=20)
    sent = a.signal(signal.SIGTERM)
    code = a.finish(timeout=20)
    took = time.monotonic() - sent
    assert took < stop_timeout, f"worker took {took:.2f}s, stop_timeout {stop_timeout}s"
    # Work cut off by the drain timeout: not clean (the message itself is put back).
    assert code == spotgrace.EXIT_UNCLEAN, a.output()
    assert _events(a, "drain.timeout"), a.output()
    abandoned = _events(a, "sqs.abandoned")
    assert len(abandoned) == 1, a.output()
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    assert [m["MessageId"] for m in got] == [abandoned[0]["message_id"]]


def test_kill_9_message_comes_back_after_the_visibility_timeout(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    results = tmp_path / "r"
    _produce(aws_env, queue, "--count", "3", "--seconds", "30")
    a = _worker(procs, aws_env, queue, results, "--visibility-timeout", "2", "--wait-time", "1")
    _wait_for(lambda: _counts(sqs, queue)[1] == 3, 10, "three messages in flight")
    a.signal(signal.SIGKILL)
    a.finish(timeout=10)
    _wait_for(lambda: _counts(sqs, queue) == (3, 0), 10, "late, not lost: visible again")


def test_poison_message_goes_to_the_dead_letter_queue(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    dlq = make_queue(sqs, "dlq")
    _produce(aws_env, queue, "--count", "1", "--fail")
    a = _worker(procs, aws_env, queue, tmp_path / "r", "--visibility-timeout", "1",
                "--wait-time", "1", "--max-receive-count", "2",
                "--dead-letter-queue-url", dlq)  # fmt: skip
    _wait_for(lambda: _counts(sqs, dlq)[0] == 1, 20, "the poison message in the DLQ")
    a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    assert len(_events(a, "sqs.handler_failed")) == 2, a.output()
    assert _events(a, "sqs.dead_lettered")[0]["receive_count"] == 3
    assert _counts(sqs, queue) == (0, 0)
    body = sqs.receive_message(QueueUrl=dlq)["Messages"][0]["Body"]
    assert json.loads(body) == {"job": 0, "fail": True}


def test_checkpoint_hand_off_resumes_on_the_next_worker(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    results, ckpt = tmp_path / "r", tmp_path / "ckpt"
    _produce(aws_env, queue, "--count", "1", "--seconds", "3", "--steps", "12")
    common = ("--visibility-timeout", "60", "--wait-time", "1", "--checkpoint-dir", str(ckpt))
    a = _worker(procs, aws_env, queue, results, "--name", "a", *common)
    a.wait_for_line("job 0 started", timeout=20)
    time.sleep(0.8)  # a few steps
    a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    handed = [line for line in a.printed() if "handed off at step" in line]
    assert handed, a.output()
    step = int(handed[0].rsplit(" ", 1)[1])
    assert _counts(sqs, queue) == (1, 0), "not given back at once"
    b = _worker(procs, aws_env, queue, results, "--name", "b", *common)
    _wait_for(lambda: _completions(results) == [0], 15, "the job done by b")
    b.signal(signal.SIGTERM)
    assert b.finish(timeout=20) == 0, b.output()
    assert f"job 0 resumed at step {step}" in b.output()
    assert not list(ckpt.glob("*.json")), "checkpoint not cleared after success"


def test_randomized_sigterms_lose_nothing_and_leave_nothing_invisible(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    rng = random.Random(14)
    for trial in range(4):
        queue = make_queue(sqs)
        results = tmp_path / f"r{trial}"
        _produce(aws_env, queue, "--count", "10", "--seconds", f"{rng.uniform(0.1, 0.6):.2f}")
        a = _worker(procs, aws_env, queue, results, "--concurrency", "2", "--prefetch", "3",
                    "--visibility-timeout", "60", "--wait-time", "1")  # fmt: skip
        time.sleep(rng.uniform(0.1, 1.5))
        a.signal(signal.SIGTERM)
        assert a.finish(timeout=20) == 0, a.output()
        done = _completions(results)
        visible, hidden = _counts(sqs, queue)
        where = f"trial {trial}: done {sorted(done)}, visible {visible}, hidden {hidden}"
        assert len(done) == len(set(done)), where
        assert hidden == 0, where
        assert visible == 10 - len(done), where
