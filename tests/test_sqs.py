"""spotgrace.sqs in-process: options, the message ledger, and a consumer inside the caller's block."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

import spotgrace
import spotgrace.sqs
from spotgrace.checkpoint import FileCheckpoint
from spotgrace.sqs import ConsumerSettings, Message, PutBack, SQSConsumer, default_wait_time
from spotgrace.sqs._ledger import Ledger, Status

from ._moto import aws_env_fixture, make_queue, moto_endpoint_fixture, sqs_client  # noqa: F401


def _raw(n: int, count: int = 1) -> dict[str, Any]:
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"r{n}",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": str(count)},
    }


def test_all_is_sorted_complete_and_documented() -> None:
    mod = spotgrace.sqs
    assert mod.__all__ == sorted(mod.__all__)
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public == set(mod.__all__)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if isinstance(obj, type) or inspect.isfunction(obj):  # not the Handler type alias
            assert obj.__doc__, name


def test_import_spotgrace_does_not_import_boto3() -> None:
    code = "import sys, spotgrace; print(sorted(m for m in sys.modules if m.startswith('bot')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("budget", "wait"), [(27.0, 5), (115.0, 20), (5.4, 1), (0.5, 1), (3600.0, 20)]
)
def test_default_wait_time_is_a_fifth_of_the_budget_within_1_to_20(
    budget: float, wait: int
) -> None:
    assert default_wait_time(budget) == wait


def test_wait_time_must_fit_in_half_the_budget() -> None:
    assert ConsumerSettings(wait_time_seconds=10).wait_time_for(27.0) == 10
    with pytest.raises(spotgrace.ConfigError, match="half the shutdown budget"):
        ConsumerSettings(wait_time_seconds=20).wait_time_for(27.0)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"concurrency": 0}, spotgrace.ConfigError),
        ({"concurrency": 2.0}, TypeError),
        ({"batch_size": 11}, spotgrace.ConfigError),
        ({"wait_time_seconds": 21}, spotgrace.ConfigError),
        ({"visibility_timeout": 0}, spotgrace.ConfigError),
        ({"visibility_timeout": 43201}, spotgrace.ConfigError),
        ({"visibility_timeout": 30, "heartbeat_interval": 30}, spotgrace.ConfigError),
        ({"heartbeat_interval": float("nan")}, spotgrace.ConfigError),
        ({"heartbeat_interval": float("inf")}, spotgrace.ConfigError),
        ({"heartbeat_interval": -1}, spotgrace.ConfigError),
        ({"visibility_timeout": 30, "heartbeat_interval": 29}, spotgrace.ConfigError),
        ({"visibility_timeout": -5}, spotgrace.ConfigError),
        ({"wait_time_seconds": -1}, spotgrace.ConfigError),
        (
            {"max_receive_count": 3, "dead_letter_queue_url": "https://sqs.example/1/q"},
            spotgrace.ConfigError,
        ),  # the queue itself
        ({"heartbeat_interval": "5"}, TypeError),
        ({"max_receive_count": 5}, spotgrace.ConfigError),  # no dead-letter queue
        ({"retry_delay": -1}, spotgrace.ConfigError),
        ({"prefetch": True}, TypeError),
    ],
)
def test_bad_options_are_clear_errors(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        SQSConsumer("https://sqs.example/1/q", lambda m: None, **options)


def test_consumer_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="queue_url"):
        SQSConsumer("", lambda m: None)
    with pytest.raises(TypeError, match="handler"):
        SQSConsumer("https://sqs.example/1/q", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown SQSConsumer option"):
        SQSConsumer("https://sqs.example/1/q", lambda m: None, visibility=5)


def test_heartbeat_defaults_to_a_third_of_the_visibility_timeout() -> None:
    assert ConsumerSettings(visibility_timeout=30).heartbeat_every == 10
    assert ConsumerSettings(visibility_timeout=30, heartbeat_interval=4).heartbeat_every == 4
    assert ConsumerSettings(visibility_timeout=30, heartbeat_interval=15).heartbeat_every == 15


def test_message_fields_and_checkpoint(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "c.json")
    m = Message(_raw(1, count=3), store=store, checkpoint_prefix="sqs:q")
    assert (m.message_id, m.receipt_handle, m.receive_count) == ("m1", "r1", 3)
    assert not m.stopping
    assert m.remaining() == float("inf")
    assert m.load_checkpoint() is None
    m.save_checkpoint({"step": 4})
    assert Message(_raw(1), store=store, checkpoint_prefix="sqs:q").load_checkpoint() == {"step": 4}
    m.clear_checkpoint()
    assert m.load_checkpoint() is None
    with pytest.raises(spotgrace.StateError, match="no checkpoint store"):
        Message(_raw(2)).save_checkpoint(1)


def test_ledger_gives_a_message_to_the_handler_or_back_never_both() -> None:
    ledger = Ledger()
    a, b, c = ledger.add([Message(_raw(i)) for i in range(3)])
    assert ledger.start(a)
    assert ledger.give_back_one(b)
    assert not ledger.start(b), "a message given back must not start"
    assert [h.message.message_id for h in ledger.give_back(Status.WAITING)] == ["m2"]
    assert not ledger.start(c)
    assert [h.message.message_id for h in ledger.give_back(Status.RUNNING)] == ["m0"]
    assert a.status is Status.ABANDONED
    assert not ledger.release(a), "an abandoned message's handler must learn it was given back"
    assert len(ledger) == 0


def test_ledger_wait_room_wakes_on_release_and_on_stop() -> None:
    ledger = Ledger()
    (h,) = ledger.add([Message(_raw(1))])
    ledger.start(h)
    threading.Timer(0.2, ledger.release, args=(h,)).start()
    assert ledger.wait_room(1, lambda: False) == 1
    ledger.add([Message(_raw(2))])
    stop = threading.Event()
    threading.Timer(0.2, lambda: (stop.set(), ledger.wake())).start()
    assert ledger.wait_room(1, stop.is_set) == 0


@pytest.mark.slow
def test_consumer_in_the_callers_block_processes_and_hands_off(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    for i in range(6):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": i}))
    seen: list[int] = []
    lock = threading.Lock()

    def handle(message: Message) -> None:
        n = json.loads(message.body)["n"]
        if n == 5 and message.receive_count == 1:
            raise PutBack()  # handed back once, processed on its next delivery
        with lock:
            seen.append(n)

    consumer = SQSConsumer(queue, handle, client=sqs, concurrency=2, wait_time_seconds=1)
    with spotgrace.graceful(stop_timeout=10, exit_code="return", signals=()) as grace:
        runner = threading.Thread(target=consumer.run, args=(grace,))
        runner.start()
        end = time.monotonic() + 20
        while len(seen) < 6 and time.monotonic() < end:
            time.sleep(0.05)
        grace.request_shutdown("test done")
        runner.join(10)
    assert sorted(seen) == list(range(6))
    stats = consumer.statistics()
    assert (stats["processed"], stats["put_back"], stats["held"]) == (6, 1, 0), stats
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"]
    assert attrs["ApproximateNumberOfMessages"] == "0"


@pytest.mark.slow
def test_failed_calls_are_logged_not_fatal(moto_endpoint: str, aws_env: dict[str, str]) -> None:
    from structlog.testing import capture_logs

    from spotgrace.sqs._calls import SQSCalls

    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    calls = SQSCalls(queue, sqs, sqs)
    stale = Message({"MessageId": "gone", "ReceiptHandle": "not-a-handle"})
    with capture_logs() as logs:
        assert calls.delete(stale) is False
        assert calls.set_visibility([stale], 0, why="test") == [stale]
        missing = SQSCalls(queue + "-missing", sqs, sqs)
        assert missing.set_visibility([stale], 0, why="test") == [stale]
        assert calls.dead_letter(stale, queue + "-no-such-dlq") is False
    assert [e["event"] for e in logs] == [
        "sqs.delete_failed",
        "sqs.visibility_failed",
        "sqs.visibility_failed",
        "sqs.dead_letter_failed",
    ]
    assert all(e["log_level"] == "error" for e in logs)


@pytest.mark.slow
def test_missing_redrive_policy_is_a_warning(moto_endpoint: str, aws_env: dict[str, str]) -> None:
    from structlog.testing import capture_logs

    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    consumer = SQSConsumer(queue, lambda m: None, client=sqs, wait_time_seconds=1)
    with (
        capture_logs() as logs,
        spotgrace.graceful(stop_timeout=5, exit_code="return", signals=()) as grace,
    ):
        grace.request_shutdown("at once")
        stats = consumer.run(grace)
    assert stats["received"] == 0
    events = [e["event"] for e in logs]
    assert "sqs.no_dead_letter" in events
    assert events.index("sqs.started") < events.index("sqs.stopped")


def test_ledger_renews_only_on_a_heartbeat_back_before_the_visibility_ran_out() -> None:
    ledger = Ledger()
    (h,) = ledger.add([Message(_raw(1))], visible_until=10.0)
    ledger.renew([h], sent=9.0, done=10.5, timeout=30)  # back too late: may have landed late
    assert h.visible_until == 10.0
    assert [x.message.message_id for x in ledger.expire(10.6)] == ["m1"]
    assert h.lost
    assert h.expired()
    assert ledger.live() == []
    assert not ledger.start(h), "a message no longer ours must not start"
    (g,) = ledger.add([Message(_raw(2))], visible_until=10.0)
    ledger.renew([g], sent=9.0, done=9.5, timeout=30)
    assert g.visible_until == 39.0
    assert ledger.expire(20.0) == []


@pytest.mark.slow
def test_heartbeat_racing_a_delete_is_not_an_error(
    moto_endpoint: str, aws_env: dict[str, str]
) -> None:
    from structlog.testing import capture_logs

    from spotgrace.sqs._calls import SQSCalls

    sqs = sqs_client(moto_endpoint)
    queue = make_queue(sqs)
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    m = Message(sqs.receive_message(QueueUrl=queue, VisibilityTimeout=30)["Messages"][0])
    calls = SQSCalls(queue, sqs, sqs)
    assert calls.delete(m)
    with capture_logs() as logs:
        assert calls.set_visibility([m], 30, why="heartbeat", still_held=lambda _: False) == [m]
    assert logs == []  # deleted meanwhile: nothing to report
    with capture_logs() as logs:
        assert calls.set_visibility([m], 30, why="heartbeat", still_held=lambda _: True) == [m]
    assert [e["event"] for e in logs] == ["sqs.visibility_failed"]


def test_system_attributes_are_asked_for_in_a_way_old_botocore_accepts() -> None:
    from spotgrace.sqs._calls import system_attributes_param

    # ReceiveMessage's parameters in botocore 1.34.0 (boto3 1.34.0, allowed by the
    # extra's boto3>=1.34): no MessageSystemAttributeNames, which failed every receive.
    old = ["QueueUrl", "AttributeNames", "MessageAttributeNames", "MaxNumberOfMessages",
           "VisibilityTimeout", "WaitTimeSeconds", "ReceiveRequestAttemptId"]  # fmt: skip
    assert system_attributes_param(old) == "AttributeNames"
    import boto3

    members = (
        boto3.client("sqs", region_name="us-east-1")
        .meta.service_model.operation_model("ReceiveMessage")
        .input_shape.members
    )
    assert system_attributes_param(members) == "MessageSystemAttributeNames"
