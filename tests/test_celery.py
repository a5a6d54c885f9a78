"""spotgrace.celery with real ``celery worker`` processes on a real redis-server.

Each test starts workers of ``tests/programs/celery_app.py`` (mode
``spotgrace``: ``spotgrace.celery.install(app)``), sends real signals, and
reads back from Redis what the tasks did and where their messages are.
Timing bounds are the guarantees themselves (the deadline, ``stop_timeout``),
never tight measurements.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from spotgrace.celery._tree import descendants
from spotgrace.testing import FakeEndpoints

from ._proc import alive, kill_quietly
from ._redis import RedisServer, redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures
from .helpers.celery_workers import (
    QUEUE,
    Worker,
    kill_group,
    queued,
    records,
    start_worker,
    unacked,
    wait_for,
)

pytestmark = pytest.mark.slow

STOP_TIMEOUT = 6.0
MARGIN = 0.6  # spotgrace's default for 6 s: 10%
DEADLINE = STOP_TIMEOUT - MARGIN
ENV = {"SPOTGRACE_STOP_TIMEOUT": str(STOP_TIMEOUT)}


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def sender(redis_url: str) -> Iterator[Celery]:
    app = Celery("sender", broker=redis_url)
    yield app
    app.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        kill_quietly(w.proc)


def send(app: Celery, task: str, *args: object) -> str:
    tag = uuid.uuid4().hex[:8]
    app.send_task(f"celery_app.{task}", args=(tag, *args), queue=QUEUE)
    return tag


def wait_started(client: redis.Redis, tag: str, timeout: float = 30.0) -> None:
    ok = wait_for(lambda: any(r["tag"] == tag for r in records(client, "started")), timeout)
    assert ok is not None, f"task {tag} never started"


def health(w: Worker, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "spotgrace.celery", "health", "--file", str(w.health_file)]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=30, check=False)


def test_task_that_fits_finishes_is_acked_and_worker_exits_0_before_deadline(
    redis_url: str, tmp_path: Path, client: redis.Redis, sender: Celery, workers: list[Worker]
) -> None:
    w = start_worker(redis_url, tmp_path, name="fits", env=ENV)
    workers.append(w)
    assert health(w).returncode == 0, health(w).stdout
    tag = send(sender, "work", 1.5)
    wait_started(client, tag)
    sent = w.proc.signal(signal.SIGTERM)
    code = w.proc.finish(timeout=STOP_TIMEOUT + 10)
    took = time.monotonic() - sent
    assert code == 0, w.proc.output()
    assert took < DEADLINE, f"exited {took:.2f} s after SIGTERM; deadline {DEADLINE} s"
    assert [r["tag"] for r in records(client, "done")] == [tag]
    assert queued(client) == 0
    assert unacked(client) == 0, "the finished task's message was not acked"
    assert records(client, "hooks"), "the @spotgrace.on_shutdown hook did not run"
    assert w.named("celery.drain_finished")
    assert not w.named("celery.task_cut")
    result = health(w)
    assert result.returncode == 1, result.stdout  # the worker is gone


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_task_that_does_not_fit_is_requeued_before_deadline_and_another_worker_completes_it(
    redis_url: str,
    tmp_path: Path,
    client: redis.Redis,
    sender: Celery,
    workers: list[Worker],
    pool: str,
) -> None:
    w1 = start_worker(redis_url, tmp_path, name="w1", pool=pool, env=ENV)
    workers.append(w1)
    tag = send(sender, "slow_once", 600, 0.2)  # 10 minutes the first time, 0.2 s after
    wait_started(client, tag)
    sent = w1.proc.signal(signal.SIGTERM)
    back = wait_for(lambda: queued(client) == 1, timeout=STOP_TIMEOUT + 5)
    code = w1.proc.finish(timeout=STOP_TIMEOUT + 10)
    took = time.monotonic() - sent
    assert back is not None, "the message never went back on the queue:\n" + w1.proc.output()
    assert back - sent < DEADLINE, f"requeued {back - sent:.2f} s after SIGTERM"
    # Work left in flight by the drain timeout: 70, as spotgrace.sqs and
    # docs/semantics.md (requeued, yet not clean).
    assert code == 70, w1.proc.output()
    assert took < STOP_TIMEOUT, f"exited {took:.2f} s after SIGTERM"
    assert w1.named("drain.timeout")[0]["inflight"] == 1
    assert unacked(client) == 0
    cut = w1.named("celery.task_cut")
    assert [(e["task"], e["requeued"]) for e in cut] == [("celery_app.slow_once", True)]
    assert records(client, "hooks")
    w2 = start_worker(redis_url, tmp_path, name="w2", pool=pool, env=ENV)
    workers.append(w2)
    done = wait_for(lambda: records(client, "done"), timeout=30)
    assert done is not None, "the second worker did not complete the task"
    assert [(r["tag"], r["worker"]) for r in records(client, "done")] == [(tag, "w2")]


def test_kill_9_with_acks_late_is_redelivered_not_lost(
    redis_url: str, tmp_path: Path, client: redis.Redis, sender: Celery, workers: list[Worker]
) -> None:
    env = {**ENV, "CELERY_TEST_VISIBILITY": "3"}
    w1 = start_worker(redis_url, tmp_path, name="w1", env=env)
    workers.append(w1)
    tag = send(sender, "slow_once", 600, 0.2)
    wait_started(client, tag)
    kill_group(w1, signal.SIGKILL)  # the whole container, at once
    w1.proc.finish(timeout=10)
    assert unacked(client) == 1, "with acks_late the message must stay unacked on the broker"
    w2 = start_worker(redis_url, tmp_path, name="w2", env=env)
    workers.append(w2)
    done = wait_for(lambda: records(client, "done"), timeout=40)
    assert done is not None, "the message was not redelivered:\n" + w2.proc.output()
    assert [(r["tag"], r["worker"]) for r in records(client, "done")] == [(tag, "w2")]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_never_returning_task_worker_tree_gone_before_stop_timeout_and_task_named(
    redis_url: str,
    tmp_path: Path,
    client: redis.Redis,
    sender: Celery,
    workers: list[Worker],
    pool: str,
) -> None:
    w = start_worker(redis_url, tmp_path, name="stuck", pool=pool, env=ENV)
    workers.append(w)
    tag = send(sender, "forever")
    wait_started(client, tag)
    tree = [w.pid, *descendants(w.pid)]
    assert len(tree) >= (3 if pool == "prefork" else 1)
    sent = w.proc.signal(signal.SIGTERM)
    w.proc.finish(timeout=STOP_TIMEOUT + 10)
    took = time.monotonic() - sent
    assert took < STOP_TIMEOUT, f"worker gone {took:.2f} s after SIGTERM"
    gone = wait_for(lambda: not any(alive(p) for p in tree), timeout=2)
    assert gone is not None, f"still alive after the worker exited: {[p for p in tree if alive(p)]}"
    cut = w.named("celery.task_cut")
    assert cut, w.proc.output()
    assert cut[0]["task"] == "celery_app.forever"
    assert cut[0]["requeued"] is True
    assert queued(client) == 1
    assert records(client, "hooks")


def test_early_warning_notice_drains_requeues_and_exits_without_a_signal(
    redis_url: str, tmp_path: Path, client: redis.Redis, sender: Celery, workers: list[Worker]
) -> None:
    with FakeEndpoints() as fake:
        env = {**ENV, **fake.env(), "SPOTGRACE_WATCH": "ecs", "SPOTGRACE_WATCH_INTERVAL": "0.2"}
        w = start_worker(redis_url, tmp_path, name="watched", env=env)
        workers.append(w)
        tag = send(sender, "slow_once", 600, 0.2)
        wait_started(client, tag)
        fake.interrupt(ec2=False)  # ECS task metadata: DesiredStatus STOPPED
        code = w.proc.finish(timeout=STOP_TIMEOUT + 15)
        assert fake.interrupted_at is not None
        took = time.monotonic() - fake.interrupted_at
    assert code == 70, w.proc.output()  # a task was cut
    started = w.named("shutdown.started")
    assert started[0]["source"] == "watch", started
    # From the worker's notice to its exit: within the deadline. From the fake
    # endpoint's flip: plus however long the poll took to see it (loaded host).
    left = w.named("celery.exit")
    assert left, w.proc.output()
    assert left[0]["elapsed"] < DEADLINE, left
    assert took < 30, f"exited {took:.2f} s after the notice was visible"
    assert [e["task"] for e in w.named("celery.task_cut")] == ["celery_app.slow_once"]
    assert queued(client) == 1


def test_a_shutdown_celery_starts_itself_runs_the_hooks_and_stays_celerys(
    redis_url: str, tmp_path: Path, client: redis.Redis, sender: Celery, workers: list[Worker]
) -> None:
    w = start_worker(redis_url, tmp_path, name="remote", env=ENV)
    workers.append(w)
    sender.control.shutdown(destination=[w.proc.wait_for_line(" ready.").split()[-2]])
    code = w.proc.finish(timeout=30)
    assert code == 0, w.proc.output()
    assert records(client, "hooks"), "the hook did not run on Celery's own shutdown"
    started = w.named("shutdown.started")
    assert started[0]["source"] == "exit", started
    assert not w.named("celery.exit")  # Celery's own shutdown, not spotgrace's os._exit


def test_eta_tasks_held_at_sigterm_go_back_on_the_queue_not_into_unacked(
    redis_url: str, tmp_path: Path, client: redis.Redis, sender: Celery, workers: list[Worker]
) -> None:
    # A countdown/ETA task (and a self.retry(countdown=...)) is held by the
    # worker, unacked, in Celery's scheduled_requests: left there, Redis would
    # redeliver it only after the visibility timeout (an hour by default).
    w = start_worker(redis_url, tmp_path, name="eta", env=ENV)
    workers.append(w)
    for _ in range(2):
        sender.send_task("celery_app.work", args=(uuid.uuid4().hex[:8], 0.0), queue=QUEUE,
                         countdown=600)  # fmt: skip
    assert wait_for(lambda: unacked(client) == 2, timeout=30) is not None, w.proc.output()
    sent = w.proc.signal(signal.SIGTERM)
    code = w.proc.finish(timeout=STOP_TIMEOUT + 10)
    assert time.monotonic() - sent < DEADLINE
    assert code == 0, w.proc.output()
    assert (queued(client), unacked(client)) == (2, 0), w.proc.output()
    held = w.named("celery.task_cut")
    assert [(e["held"], e["requeued"]) for e in held] == [(True, True)] * 2, held
    assert not records(client, "started"), "a held task was started at the cut"
