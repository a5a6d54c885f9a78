"""The cut's requeue against kombu's internals, without a worker (fakes of kombu's objects).

The head-of-queue requeue calls kombu's Redis ``QoS.restore_by_tag(tag,
leftmost=False)``, an internal. If kombu changes it, the cut must say so and
still put the message back (``reject(requeue=True)``), and one message that
cannot go back must not keep the others from going back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from celery.worker import state as worker_state

from spotgrace.celery._worker import StepConfig, _requeue_now, _Shutdown


class FakeQos:
    def __init__(self, *, new_signature: bool = False) -> None:
        self.new_signature = new_signature
        self.restored: list[tuple[str, bool]] = []
        self.acked: list[str] = []

    def restore_by_tag(self, tag: str, client: Any = None, **kw: Any) -> None:
        if self.new_signature:  # as if kombu renamed the keyword
            raise TypeError("restore_by_tag() got an unexpected keyword argument 'leftmost'")
        self.restored.append((tag, kw["leftmost"]))

    def ack(self, tag: str) -> None:
        self.acked.append(tag)


class FakeChannel:
    def __init__(self, qos: FakeQos | None) -> None:
        self.qos = qos


class FakeMessage:
    def __init__(self, tag: str, qos: FakeQos | None, *, broken: bool = False) -> None:
        self.delivery_tag = tag
        self.channel = FakeChannel(qos)
        self.acknowledged = False
        self.rejected: list[bool] = []
        self.broken = broken

    def reject(self, requeue: bool = False) -> None:
        if self.broken:
            raise ConnectionError("broker gone")
        self.rejected.append(requeue)
        self.acknowledged = True


class FakeRequest:
    def __init__(self, message: FakeMessage, name: str) -> None:
        self.message = message
        self.acknowledged = False
        self.name = name
        self.id = name
        self.eta = None
        self.time_start = None
        self.worker_pid = None


def test_head_requeue_uses_kombus_restore_on_redis() -> None:
    qos = FakeQos()
    req = FakeRequest(FakeMessage("t1", qos), "a")
    assert _requeue_now(req) is True
    assert qos.restored == [("t1", False)]
    assert qos.acked == ["t1"]
    assert req.acknowledged is True


def test_a_changed_kombu_restore_falls_back_to_reject_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SPOTGRACE_EVENTS_FILE", str(events))
    qos = FakeQos(new_signature=True)
    req = FakeRequest(FakeMessage("t1", qos), "a")
    assert _requeue_now(req) is True
    assert req.message.rejected == [True], "the message was not put back"
    assert qos.acked == []
    logged = events.read_text() if events.exists() else ""
    assert "celery.requeue_head_failed" in logged, logged


def test_one_message_that_cannot_go_back_does_not_keep_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("SPOTGRACE_EVENTS_FILE", str(events))
    monkeypatch.setattr(worker_state, "should_terminate", None)
    broken = FakeRequest(FakeMessage("t1", None, broken=True), "broken")
    fine = FakeRequest(FakeMessage("t2", None), "fine")
    for req in (broken, fine):
        worker_state.reserved_requests.add(req)
    try:
        config = StepConfig(graceful_kwargs={}, drain_timeout=None, health_file=None,
                            health_interval=5.0)  # fmt: skip
        _Shutdown(object(), config)._cut()
    finally:
        for req in (broken, fine):
            worker_state.reserved_requests.discard(req)
    assert fine.message.rejected == [True], "the second message was not requeued"
    assert worker_state.should_terminate is True
    lines = [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []
    failed = [e for e in lines if e.get("event") == "celery.requeue_failed"]
    assert [e["task"] for e in failed] == ["broken"], lines


def test_canary_kombus_redis_qos_still_has_what_the_head_requeue_calls() -> None:
    # A kombu upgrade that changes these fails here, in CI, not in a worker's cut.
    import inspect

    from kombu.transport.redis import QoS

    params = inspect.signature(QoS.restore_by_tag).parameters
    assert list(params)[:2] == ["self", "tag"], params
    assert "leftmost" in params, params
    assert callable(getattr(QoS, "ack", None))
