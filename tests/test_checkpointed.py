"""checkpointed(): resume, save cadence, stop on shutdown, final save from the hook."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import spotgrace
from spotgrace.checkpoint import (
    CheckpointError,
    CheckpointStore,
    FileCheckpoint,
    RedisCheckpoint,
    SyncCheckpointStore,
    checkpointed,
)

from ._proc import ROOT, Proc, kill_quietly, start
from ._redis import redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures


class SpyStore(SyncCheckpointStore):
    """A real store that also records every save."""

    def __init__(self, inner: CheckpointStore) -> None:
        self.inner = inner
        self.saves: list[Any] = []

    def load(self, key: str) -> Any:
        return self.inner.load(key)

    def save(self, key: str, value: object) -> None:
        self.saves.append(value)
        self.inner.save(key, value)

    def clear(self, key: str) -> None:
        self.inner.clear(key)


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpyStore]:
    if request.param == "file":
        yield SpyStore(FileCheckpoint(tmp_path / "ck.json"))
    else:
        redis_store = RedisCheckpoint(request.getfixturevalue("redis_url"), "ck")
        yield SpyStore(redis_store)
        redis_store.close()


def test_fresh_run_yields_everything_and_saves_complete(store: SpyStore) -> None:
    run = checkpointed(range(10), store, key="job", every=None, every_seconds=None)
    assert list(run) == list(range(10))
    assert (run.position, run.complete, run.stopped) == (10, True, False)
    assert store.saves == [{"position": 10, "complete": True}]


def test_item_in_hand_at_break_is_not_counted_and_is_redone(store: SpyStore) -> None:
    first = checkpointed(range(10), store, key="job")
    for item in first:
        if item == 4:
            break
    assert (first.position, first.complete) == (4, False)
    second = checkpointed(range(10), store, key="job")
    assert list(second) == [4, 5, 6, 7, 8, 9]
    assert (second.resumed_from, second.position, second.complete) == (4, 10, True)


def test_body_that_raises_saves_what_finished(store: SpyStore) -> None:
    def consume() -> None:
        for item in checkpointed(range(10), store, key="job"):
            if item == 6:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        consume()
    assert store.load("job") == {"position": 6, "complete": False}


def test_saves_every_n_items(store: SpyStore) -> None:
    list(checkpointed(range(10), store, key="job", every=3, every_seconds=None))
    assert [s["position"] for s in store.saves] == [3, 6, 9, 10]
    assert store.saves[-1]["complete"] is True


def test_saves_every_t_seconds_as_items_finish(store: SpyStore) -> None:
    now = [0.0]
    run = checkpointed(
        range(10), store, key="job", every=None, every_seconds=2.5, clock=lambda: now[0]
    )
    for _ in run:
        now[0] += 1.0  # each item takes one (fake) second
    assert [s["position"] for s in store.saves] == [3, 6, 9, 10]


def test_complete_run_yields_nothing_until_cleared(store: SpyStore) -> None:
    list(checkpointed("abc", store, key="job"))
    again = checkpointed("abc", store, key="job")
    assert list(again) == []
    assert again.complete
    store.clear("job")
    assert list(checkpointed("abc", store, key="job")) == ["a", "b", "c"]


def test_keys_are_independent(store: SpyStore) -> None:
    list(checkpointed("abc", store, key="monday"))
    assert list(checkpointed("abc", store, key="tuesday")) == ["a", "b", "c"]


def test_shorter_source_than_checkpoint_is_complete(store: SpyStore) -> None:
    store.save("job", {"position": 8, "complete": False})
    run = checkpointed(range(5), store, key="job")
    assert list(run) == []
    assert run.complete


@pytest.mark.parametrize(
    "record", [[1], {"position": -1, "complete": False}, {"position": 1}, {"position": True}]
)
def test_foreign_record_is_an_error(store: SpyStore, record: Any) -> None:
    store.save("job", record)
    with pytest.raises(CheckpointError, match="not a checkpointed"):
        list(checkpointed(range(5), store, key="job"))


def test_iterates_once(tmp_path: Path) -> None:
    run = checkpointed(range(3), FileCheckpoint(tmp_path / "ck.json"))
    list(run)
    with pytest.raises(RuntimeError, match="runs once"):
        list(run)


@pytest.mark.parametrize(
    "kwargs",
    [{"every": 0}, {"every": 1.5}, {"every": True}, {"every_seconds": 0},
     {"every_seconds": float("nan")}, {"key": ""}],
)  # fmt: skip
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)).replace("key", "empty")):
        checkpointed(range(3), FileCheckpoint(tmp_path / "ck.json"), **kwargs)


def test_sync_for_over_async_source_is_a_type_error(tmp_path: Path) -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="async for"):
        iter(checkpointed(numbers(), FileCheckpoint(tmp_path / "ck.json")))


async def _collect(run: Any, stop_at: int | None = None) -> list[Any]:
    out = []
    async with contextlib.aclosing(aiter(run)) as items:
        async for item in items:
            if item == stop_at:
                break
            out.append(item)
    return out


@pytest.mark.parametrize("source", ["sync", "async"])
def test_async_for_resumes(store: SpyStore, source: str) -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(10):
            await asyncio.sleep(0)
            yield i

    def make() -> Any:
        return range(10) if source == "sync" else numbers()

    async def main() -> tuple[list[int], list[int]]:
        first = await _collect(checkpointed(make(), store, key="job", every=2), stop_at=5)
        second = await _collect(checkpointed(make(), store, key="job", every=2))
        return first, second

    first, second = asyncio.run(main())
    assert first == [0, 1, 2, 3, 4]
    assert second == [5, 6, 7, 8, 9]
    assert store.load("job") == {"position": 10, "complete": True}


# -- with the real coordinator, in process --------------------------------------


def _hook_events(logs: list[dict[str, Any]], key: str) -> list[str]:
    return [e["event"] for e in logs if e.get("hook") == f"checkpoint {key}"]


def test_stops_taking_items_once_stopping(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    seen = []
    with capture_logs() as logs, spotgrace.graceful(signals=()) as grace:
        run = checkpointed(range(10), store, key="job", grace=grace)
        for item in run:
            seen.append(item)
            if item == 3:
                grace.request_shutdown("test")
                assert grace.wait(timeout=10)
    assert seen == [0, 1, 2, 3]  # the item in hand was finished, no new one taken
    assert (run.stopped, run.complete, run.position) == (True, False, 4)
    assert store.load("job") == {"position": 4, "complete": False}
    # The loop ended and saved by itself, so its hook was removed again.
    assert _hook_events(logs, "job") == []


class FailOnce(SyncCheckpointStore):
    """A file store whose save number ``fail_at`` raises."""

    def __init__(self, inner: FileCheckpoint, fail_at: int) -> None:
        self.inner, self.calls, self.fail_at = inner, 0, fail_at

    def load(self, key: str) -> Any:
        return self.inner.load(key)

    def save(self, key: str, value: object) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("disk hiccup")
        self.inner.save(key, value)

    def clear(self, key: str) -> None:
        self.inner.clear(key)


def test_failed_final_save_is_retried_by_the_shutdown_hook(tmp_path: Path) -> None:
    store = FailOnce(FileCheckpoint(tmp_path / "ck.json"), fail_at=1)

    def body() -> None:
        with spotgrace.graceful(signals=()) as grace:
            for _ in checkpointed(range(5), store, key="job", every=None, grace=grace):
                pass

    with capture_logs() as logs, pytest.raises(OSError, match="disk hiccup"):
        body()
    assert _hook_events(logs, "job") == ["hook.started", "hook.finished"]
    assert store.load("job") == {"position": 5, "complete": True}


def test_shutdown_hook_saves_when_the_iterator_is_never_closed(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")
    with capture_logs() as logs, spotgrace.graceful(signals=()) as grace:
        run = checkpointed(range(10), store, key="job", every=None, every_seconds=None, grace=grace)
        it = iter(run)
        assert [next(it), next(it), next(it)] == [0, 1, 2]  # 0 and 1 finished, 2 in hand
        grace.request_shutdown("test")
        assert store.load("job") is None  # nothing saved yet: every=None
    # The block ended; the hook ran while `it` is still open and suspended.
    assert store.load("job") == {"position": 2, "complete": False}
    assert _hook_events(logs, "job") == ["hook.started", "hook.finished"]
    del it
    assert store.load("job") == {"position": 2, "complete": False}


def test_async_stops_taking_items_once_stopping(tmp_path: Path) -> None:
    store = FileCheckpoint(tmp_path / "ck.json")

    async def main() -> tuple[list[int], Any]:
        seen = []
        async with spotgrace.graceful(signals=()) as grace:
            run = checkpointed(range(10), store, key="job", grace=grace)
            async for item in run:
                seen.append(item)
                if item == 5:
                    grace.request_shutdown("test")
                    assert await grace.wait(timeout=10)
        return seen, run

    seen, run = asyncio.run(main())
    assert seen == [0, 1, 2, 3, 4, 5]
    assert (run.stopped, run.position) == (True, 6)
    assert store.load("job") == {"position": 6, "complete": False}


# -- examples/batch_job.py and an async job, as real processes -------------------

BATCH = ROOT / "examples" / "batch_job.py"
COUNT = 300
EVERY = 10


def _items(output: Path) -> list[str]:
    if not output.exists():
        return []
    return [json.loads(line)["item"] for line in output.read_text().splitlines()]


def _wait_for_lines(path: Path, n: int, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or len(path.read_text().splitlines()) < n:
        assert proc.popen.poll() is None, "exited early:\n" + proc.output()
        assert time.monotonic() < deadline, f"fewer than {n} lines in {timeout}s"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "redis"])
def test_batch_job_sigterm_then_rerun_processes_every_item_once(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    output = tmp_path / "out.jsonl"
    if where == "file":
        store_args = ["--checkpoint", str(tmp_path / "ck.json")]
    else:
        store_args = ["--redis-url", request.getfixturevalue("redis_url")]
    args = ["--count", str(COUNT), "--output", str(output), "--every", str(EVERY),
            "--work-seconds", "0.01", "--key", "t", *store_args]  # fmt: skip

    first = start(BATCH, *args)
    try:
        first.wait_for_line("batch: started")
        _wait_for_lines(output, 40, first)
        first.signal(signal.SIGTERM)
        assert first.finish() == 75, first.output()  # interrupted before done: "retry me"
    finally:
        kill_quietly(first)
    assert any(line.startswith("batch: stopped at") for line in first.printed()), first.output()
    done_first = _items(output)
    assert 40 <= len(done_first) < COUNT, "SIGTERM should land mid-run"

    second = start(BATCH, *args)
    try:
        assert second.finish(timeout=60) == 0, second.output()
    finally:
        kill_quietly(second)
    assert f"batch: complete, {COUNT} items" in second.printed(), second.output()
    items = _items(output)
    assert sorted(set(items), key=int) == [str(i) for i in range(COUNT)]
    duplicates = len(items) - len(set(items))
    print(f"resume ({where}): {len(done_first)}/{COUNT} before SIGTERM, {duplicates} duplicates")
    assert duplicates <= EVERY
    assert duplicates == 0  # a graceful stop saves the exact position


@pytest.mark.slow
def test_batch_job_kill_9_redoes_at_most_every_items(tmp_path: Path) -> None:
    output, ck = tmp_path / "out.jsonl", tmp_path / "ck.json"
    args = ["--count", str(COUNT), "--output", str(output), "--checkpoint", str(ck),
            "--every", str(EVERY), "--work-seconds", "0.005", "--key", "t"]  # fmt: skip
    rng = random.Random()
    redone = []
    for kill in range(4):
        proc = start(BATCH, *args)
        try:
            _wait_for_lines(output, 30 * (kill + 1) + rng.randrange(EVERY), proc)
            os.killpg(proc.pid, signal.SIGKILL)
            assert proc.finish() == -signal.SIGKILL
        finally:
            kill_quietly(proc)
        finished = len(set(_items(output)))  # items are taken in order: 0 .. finished-1
        position = FileCheckpoint(ck).load("t")["position"]
        assert 0 <= finished - position <= EVERY
        redone.append(finished - position)
    last = start(BATCH, *args)
    try:
        assert last.finish(timeout=60) == 0, last.output()
    finally:
        kill_quietly(last)
    items = _items(output)
    assert sorted(set(items), key=int) == [str(i) for i in range(COUNT)]
    assert len(items) - len(set(items)) == sum(redone)
    print(f"kill -9 x{len(redone)}: items redone per kill {redone} (every={EVERY})")


@pytest.mark.slow
def test_async_job_cancelled_by_run_saves_exact_position_from_the_hook(tmp_path: Path) -> None:
    output, ck = tmp_path / "out.txt", tmp_path / "ck.json"
    args = [str(ck), str(output), str(COUNT), "none", "0.01"]
    first = start("async_batch.py", *args)
    try:
        first.wait_for_line("ready")
        deadline = time.monotonic() + 30
        while not output.exists() or len(output.read_text().splitlines()) < 30:
            assert time.monotonic() < deadline, first.output()
            time.sleep(0.02)
        first.signal(signal.SIGTERM)
        assert first.finish() == 75, first.output()  # not done: "retry me"
    finally:
        kill_quietly(first)
    written = output.read_text().splitlines()
    assert 30 <= len(written) < COUNT
    # every=None: only a final save wrote this, and it is exact.
    assert FileCheckpoint(ck).load("async") == {"position": len(written), "complete": False}
    assert "checkpoint async" in first.output()  # the hook ran (its events name it)

    second = start("async_batch.py", *args)
    try:
        assert second.finish(timeout=60) == 0, second.output()
    finally:
        kill_quietly(second)
    assert f"complete=True position={COUNT}" in second.output()
    lines = output.read_text().splitlines()
    assert sorted(lines, key=int) == [str(i) for i in range(COUNT)]  # all, none twice
