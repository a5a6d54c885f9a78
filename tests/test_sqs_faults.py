"""spotgrace.sqs under faults found by review: lost visibility, a slow heartbeat, FIFO
groups, short polling, secrets in logs. Real moto server on 127.0.0.1; real worker
processes (examples/sqs_worker.py) and real signals where a process is involved;
faults come from a real HTTP proxy in front of moto (tests/_moto.py FaultProxy).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import spotgrace
from spotgrace.sqs import Message, SQSConsumer

from ._moto import (  # noqa: F401
    FaultProxy,
    aws_env_fixture,
    make_queue,
    moto_endpoint_fixture,
    procs_fixture,
    sqs_client,
    sqs_fixture,
    start_worker,
)
from ._proc import Proc

pytestmark = pytest.mark.slow

_worker = start_worker


def _counts(sqs: Any, queue: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def _events(p: Proc, name: str) -> list[dict[str, Any]]:
    return [e for e in p.events() if e.get("event") == name]


def test_message_whose_visibility_ran_out_is_not_given_back(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """Heartbeats fail, another worker takes the message: the first must not make it
    visible again at shutdown (that would hand it to a third worker)."""
    queue = make_queue(sqs)
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"job": 1, "seconds": 60}))
    with FaultProxy(sqs.meta.endpoint_url) as proxy:
        proxy.fail_heartbeats.set()
        a = _worker(procs, {**aws_env, "AWS_ENDPOINT_URL": proxy.url}, queue, tmp_path / "r",
                    "--visibility-timeout", "2", "--wait-time", "1", "--concurrency", "1",
                    stop_timeout=3)  # fmt: skip
        end = time.monotonic() + 10
        while _counts(sqs, queue) != (0, 1) and time.monotonic() < end:
            time.sleep(0.05)
        # This test is the other worker: it gets the message once its visibility ran out.
        got: list[dict[str, Any]] = []
        end = time.monotonic() + 15
        while not got and time.monotonic() < end:
            reply = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, VisibilityTimeout=60)
            got = reply.get("Messages", [])
        assert got, a.output()
        assert proxy.refused >= 1
        a.wait_for_line('"sqs.visibility_lost"', timeout=10)
        a.signal(signal.SIGTERM)
        assert a.finish(timeout=20) == spotgrace.EXIT_UNCLEAN, (
            a.output()
        )  # cut off by the drain timeout
    assert _events(a, "sqs.put_back") == [], a.output()
    assert [e["message_ids"] for e in _events(a, "sqs.not_put_back")] == [[got[0]["MessageId"]]]
    # Still invisible: the other worker holds it for 60 s.
    assert _counts(sqs, queue) == (0, 1), a.output()


def test_slow_heartbeat_cannot_undo_the_put_back(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """A heartbeat call in progress when a handler hands its message back (PutBack)
    must not land after the put-back and hide the message again."""
    queue = make_queue(sqs)
    job = {"job": 1, "seconds": 600, "steps": 6000}  # checks message.stopping every 0.1 s
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(job))
    with FaultProxy(sqs.meta.endpoint_url) as proxy:
        # Longer than the put-back waits for a heartbeat (2 s); short enough next to the
        # 12 s visibility (a beat every 4 s) that every beat still renews it in time.
        proxy.delay_heartbeats = 3.0
        a = _worker(procs, {**aws_env, "AWS_ENDPOINT_URL": proxy.url}, queue, tmp_path / "r",
                    "--visibility-timeout", "12", "--wait-time", "1",
                    "--checkpoint-dir", str(tmp_path / "ckpt"))  # fmt: skip
        a.wait_for_line("job 1 started", timeout=20)
        assert proxy.holding.wait(20), a.output()  # a heartbeat call is held right now
        a.signal(signal.SIGTERM)
        assert a.finish(timeout=20) == 0, a.output()
        assert "handed off at step" in a.output()
        assert [e["why"] for e in _events(a, "sqs.put_back")] == ["handed off by the handler"]
        end = time.monotonic() + 5
        while proxy.holding.is_set() and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.5)  # the held heartbeat has landed
        assert _counts(sqs, queue) == (1, 0), "the put-back was undone:\n" + a.output()


def test_handler_failure_log_has_no_message_body(
    sqs: Any, aws_env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    queue = make_queue(sqs)
    secret = "4111-1111-1111-SECRET"
    body = {"job": 1, "fail": True, "card": secret}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    a = _worker(procs, aws_env, queue, tmp_path / "r", "--visibility-timeout", "60",
                "--wait-time", "1")  # fmt: skip
    a.wait_for_line('"sqs.handler_failed"', timeout=20)
    a.signal(signal.SIGTERM)
    assert a.finish(timeout=20) == 0, a.output()
    failed = _events(a, "sqs.handler_failed")
    assert len(failed) == 1
    assert "RuntimeError" in failed[0]["traceback"], failed[0]
    assert secret not in a.output()


def test_fifo_message_group_keeps_its_order_through_failures_and_concurrency(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs, "fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for n in range(6):
        for g in "ab":
            sqs.send_message(QueueUrl=queue, MessageBody=f"{g}{n}", MessageGroupId=g)
    done: dict[str, list[int]] = {"a": [], "b": []}
    running: dict[str, int] = {"a": 0, "b": 0}
    overlaps: list[str] = []
    lock = threading.Lock()

    def handle(message: Message) -> None:
        g, n = message.body[0], int(message.body[1:])
        with lock:
            running[g] += 1
            if running[g] > 1:
                overlaps.append(message.body)
        try:
            time.sleep(0.02 if n % 2 else 0.1)
            if message.body == "a2" and message.receive_count == 1:
                raise RuntimeError("fails once")
            with lock:
                done[g].append(n)
        finally:
            with lock:
                running[g] -= 1

    consumer = SQSConsumer(
        queue, handle, client=sqs, concurrency=4, wait_time_seconds=1, retry_delay=0
    )
    with spotgrace.graceful(stop_timeout=10, exit_code="return", signals=()) as grace:
        runner = threading.Thread(target=consumer.run, args=(grace,))
        runner.start()
        end = time.monotonic() + 25
        while sum(map(len, done.values())) < 12 and time.monotonic() < end:
            time.sleep(0.05)
        grace.request_shutdown("test done")
        runner.join(10)
    assert overlaps == [], "two messages of one group ran at once"
    assert done == {"a": list(range(6)), "b": list(range(6))}, done
    assert consumer.statistics()["failed"] == 1


def test_short_polling_an_empty_queue_is_not_a_busy_loop(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    receives: list[float] = []
    sqs.meta.events.register(
        "before-call.sqs.ReceiveMessage", lambda **_: receives.append(time.monotonic())
    )
    consumer = SQSConsumer(queue, lambda m: None, client=sqs, wait_time_seconds=0)
    with spotgrace.graceful(stop_timeout=10, exit_code="return", signals=()) as grace:
        runner = threading.Thread(target=consumer.run, args=(grace,))
        runner.start()
        time.sleep(2.5)
        grace.request_shutdown("test done")
        runner.join(10)
    assert not runner.is_alive()
    # One short poll a second at most (plus the one in progress): not hundreds.
    assert 1 <= len(receives) <= 5, len(receives)


def test_message_arriving_late_in_a_long_poll_is_processed_with_a_short_visibility(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    """The visibility clock starts when SQS hands the message out, not when the poll
    began: a 1 s visibility timeout and a message 1.2 s into a 2 s poll still runs."""
    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    seen: list[str] = []
    consumer = SQSConsumer(
        queue, lambda m: seen.append(m.body), client=sqs, wait_time_seconds=2, visibility_timeout=1
    )
    with spotgrace.graceful(stop_timeout=20, exit_code="return", signals=()) as grace:
        runner = threading.Thread(target=consumer.run, args=(grace,))
        runner.start()
        time.sleep(1.2)  # a poll is in progress on the empty queue
        sqs.send_message(QueueUrl=queue, MessageBody="late")
        end = time.monotonic() + 5
        while not seen and time.monotonic() < end:
            time.sleep(0.05)
        grace.request_shutdown("test done")
        runner.join(10)
    assert seen == ["late"], consumer.statistics()


def test_message_delivered_after_its_visibility_ran_out_is_not_started(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    """A reply slower than the visibility timeout: another worker may have the message
    already, so this one must not start it (a duplicate the consumer could avoid)."""
    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    seen: list[str] = []
    with FaultProxy(moto_endpoint) as proxy:
        proxy.delay_deliveries = 2.5  # visibility timeout 1 s
        slow = sqs_client(proxy.url)
        consumer = SQSConsumer(
            queue, lambda m: seen.append(m.body), client=slow, wait_time_seconds=1,
            visibility_timeout=1,
        )  # fmt: skip
        with spotgrace.graceful(stop_timeout=20, exit_code="return", signals=()) as grace:
            runner = threading.Thread(target=consumer.run, args=(grace,))
            runner.start()
            time.sleep(0.3)
            sqs.send_message(QueueUrl=queue, MessageBody="slow")
            got: list[dict[str, Any]] = []
            end = time.monotonic() + 10
            while not got and time.monotonic() < end:  # the other worker
                reply = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, VisibilityTimeout=60)
                got = reply.get("Messages", [])
            assert got
            end = time.monotonic() + 10
            while consumer.statistics()["received"] < 1 and time.monotonic() < end:
                time.sleep(0.05)
            time.sleep(0.5)
            grace.request_shutdown("test done")
            runner.join(10)
    assert consumer.statistics()["received"] == 1
    assert seen == [], "started a message whose visibility had run out on its way"
