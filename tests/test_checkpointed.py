"""checkpointed(): resume, save cadence, stop on shutdown, final save from the hook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from spotgrace.checkpoint import (
    CheckpointError,
    CheckpointStore,
    FileCheckpoint,
    RedisCheckpoint,
    SyncCheckpointStore,
    checkpointed,
)

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
