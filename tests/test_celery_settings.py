"""install() and a user's own Celery settings: what it replaces is said, never silent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import spotgrace.celery
from spotgrace.celery._worker import StepConfig, _Shutdown


def _events(path: Path, name: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return [e for e in lines if e.get("event") == name]


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("SPOTGRACE_EVENTS_FILE", str(path))
    monkeypatch.setenv("SPOTGRACE_STOP_TIMEOUT", "30")
    return path


@pytest.mark.parametrize("loaded", [False, True])
def test_a_value_of_yours_replaced_by_install_is_logged(events: Path, loaded: bool) -> None:
    app = Celery("mine", broker="memory://")
    if loaded:
        assert app.conf.broker_url  # the configuration is loaded before the user's own line
    app.conf.task_acks_late = False
    app.conf.worker_prefetch_multiplier = 1  # the same value: nothing to say
    installed = spotgrace.celery.install(app, health_file=False)
    assert app.conf.task_acks_late is True
    assert installed.overridden == {"task_acks_late": False}
    said = _events(events, "celery.setting_overridden")
    assert [(e["setting"], e["yours"], e["now"]) for e in said] == [("task_acks_late", False, True)]


def test_no_warning_when_nothing_of_yours_is_replaced(events: Path) -> None:
    installed = spotgrace.celery.install(Celery("mine", broker="memory://"), health_file=False)
    assert installed.overridden == {}
    assert _events(events, "celery.setting_overridden") == []


def test_configure_false_replaces_nothing_and_says_nothing(events: Path) -> None:
    app = Celery("mine", broker="memory://")
    app.conf.task_acks_late = False
    installed = spotgrace.celery.install(app, health_file=False, configure=False)
    assert app.conf.task_acks_late is False
    assert installed.overridden == {}
    assert _events(events, "celery.setting_overridden") == []


class _FakeWorker:
    def __init__(self, app: Celery) -> None:
        self.app = app


def test_a_value_changed_after_install_is_logged_when_the_worker_starts(events: Path) -> None:
    app = Celery("mine", broker="memory://")
    installed = spotgrace.celery.install(app, health_file=False)
    app.conf.task_acks_late = False  # after the call: the user's value wins
    config = StepConfig(graceful_kwargs={}, drain_timeout=None, health_file=None,
                        health_interval=5.0, settings=installed.settings)  # fmt: skip
    _Shutdown(_FakeWorker(app), config)._check_settings()
    said = _events(events, "celery.setting_changed")
    assert [(e["setting"], e["value"]) for e in said] == [("task_acks_late", False)]
    assert "lost" in said[0]["note"]


class _FakeGrace:
    ready = True


def test_a_heartbeat_that_cannot_be_written_is_logged_once(events: Path, tmp_path: Path) -> None:
    # An unwritable health file made every health check fail with no word in
    # the worker's log: ECS replaces a healthy worker again and again.
    path = tmp_path / "no-such-dir" / "health.json"
    config = StepConfig(graceful_kwargs={}, drain_timeout=None, health_file=path,
                        health_interval=5.0)  # fmt: skip
    seq = _Shutdown(_FakeWorker(Celery("mine", broker="memory://")), config)
    seq.grace = _FakeGrace()  # type: ignore[assignment]
    seq._beat()
    seq._beat()
    said = _events(events, "celery.health_write_failed")
    assert [e["path"] for e in said] == [str(path)]
    path.parent.mkdir()
    seq._beat()
    assert spotgrace.celery.check_health(path, max_age=30).ok  # written once it can be


def _fresh_beat(path: Path) -> None:
    from spotgrace.celery._health import write_beat

    write_beat(path, {"pid": os.getpid(), "state": "running", "ready": True})


def test_health_refuses_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    _fresh_beat(real)
    link = tmp_path / "health.json"
    link.symlink_to(real)
    assert spotgrace.celery.check_health(real, max_age=30).ok
    result = spotgrace.celery.check_health(link, max_age=30)
    assert not result.ok
    assert "symlink" in result.reason


def test_health_refuses_another_users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In a shared /tmp (sticky) the worker cannot replace a file another user
    # made there; the check then read that user's heartbeat and passed.
    path = tmp_path / "health.json"
    _fresh_beat(path)
    owner = path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1000)  # as a user who is not root
    result = spotgrace.celery.check_health(path, max_age=30)
    assert not result.ok
    assert f"belongs to uid {owner}" in result.reason


@pytest.mark.parametrize("max_age", ["inf", "nan", "0", "-1"])
def test_health_command_rejects_a_max_age_that_never_expires(tmp_path: Path, max_age: str) -> None:
    from spotgrace.celery.__main__ import main as health_main

    path = tmp_path / "health.json"
    _fresh_beat(path)
    with pytest.raises(SystemExit) as exc:  # argparse's error: exit 2
        health_main(["health", "--file", str(path), "--max-age", max_age])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("url", "scheme", "warned"),
    [("memory://", "memory", True), ("amqp://guest@localhost//", "amqp", True),
     ("redis://127.0.0.1:6379/0", "redis", False), ("rediss://h:6380/0", "rediss", False),
     ("redis+socket:///tmp/r.sock", "redis", False)],
)  # fmt: skip
def test_a_broker_other_than_redis_is_named_at_start(
    events: Path, url: str, scheme: str, warned: bool
) -> None:
    from spotgrace.celery._startup import check_broker

    assert check_broker(_FakeWorker(Celery("mine", broker=url)), event_loop=True) == scheme
    said = _events(events, "celery.broker_untested")
    assert [e["broker"] for e in said] == ([scheme] if warned else [])
