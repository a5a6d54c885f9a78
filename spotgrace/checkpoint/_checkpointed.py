"""checkpointed(): resumable iteration over sync and async iterables.

Public names are re-exported by :mod:`spotgrace.checkpoint`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Sized,
)
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog

from .._core._errors import StateError
from ._base import CheckpointError, CheckpointStore, check_key

if TYPE_CHECKING:
    from .._graceful._graceful import AsyncGrace, Grace

__all__ = ["Checkpointed", "checkpointed"]

T = TypeVar("T")

#: Order of the shutdown hook that saves the final checkpoint: before hooks of
#: the default order 0, which may close the connections a store needs.
HOOK_ORDER = -100

_log = structlog.get_logger("spotgrace")


class _Progress:
    """Position of one iteration and when it was last saved; shared with the shutdown hook."""

    def __init__(
        self,
        store: CheckpointStore,
        key: str,
        every: int | None,
        every_seconds: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.store, self.key, self.clock = store, key, clock
        self.every, self.every_seconds = every, every_seconds
        self.position = 0
        self.resumed_from = 0
        self.complete = False
        self.stopped = False
        self.saved: tuple[int, bool] | None = None
        self.last_save = clock()
        self.lock = threading.Lock()

    def begin(self, loaded: Any) -> None:
        if loaded is not None:
            position = loaded.get("position") if isinstance(loaded, dict) else None
            complete = loaded.get("complete") if isinstance(loaded, dict) else None
            if not (
                isinstance(position, int)
                and not isinstance(position, bool)
                and position >= 0
                and isinstance(complete, bool)
            ):
                raise CheckpointError(
                    f"checkpoint {self.key!r} in {self.store!r} is not a checkpointed() "
                    f"record: {loaded!r}"
                )
            self.position = self.resumed_from = position
            self.complete = complete
            self.saved = (position, complete)
            if position:
                _log.info("checkpoint.resumed", key=self.key, position=position, complete=complete)

    def due(self) -> bool:
        unsaved = self.position - (self.saved[0] if self.saved else 0)
        if unsaved <= 0:
            return False
        if self.every is not None and unsaved >= self.every:
            return True
        return (
            self.every_seconds is not None and self.clock() - self.last_save >= self.every_seconds
        )

    def _snapshot(self) -> tuple[int, bool] | None:
        state = (self.position, self.complete)
        return None if state == self.saved else state

    def _mark(self, state: tuple[int, bool]) -> None:
        self.saved = state
        self.last_save = self.clock()

    def save(self) -> None:
        """Save unless nothing changed since the last save; thread-safe."""
        with self.lock:
            state = self._snapshot()
            if state is not None:
                self.store.save(self.key, {"position": state[0], "complete": state[1]})
                self._mark(state)

    async def asave(self) -> None:
        """:meth:`save` for coroutines."""
        state = self._snapshot()
        if state is not None:
            await self.store.asave(self.key, {"position": state[0], "complete": state[1]})
            self._mark(state)

    def finished(self) -> None:
        _log.info(
            "checkpoint.finished",
            key=self.key,
            position=self.position,
            processed=self.position - self.resumed_from,
            complete=self.complete,
            stopped=self.stopped,
        )


class Checkpointed(Generic[T]):
    """A resumable iteration made by :func:`checkpointed`; iterate it once.

    ``for`` works over a sync source; ``async for`` over a sync or async one.
    After (or during) the loop, :attr:`position`, :attr:`complete` and
    :attr:`stopped` tell how far it got and why it ended.
    """

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        progress: _Progress,
        grace: Grace | AsyncGrace | None,
    ) -> None:
        self._items = items
        self._progress = progress
        self._grace = grace
        self._started = False
        self._hook: Callable[[], None] | None = None

    @property
    def key(self) -> str:
        """The checkpoint key."""
        return self._progress.key

    @property
    def position(self) -> int:
        """Items finished so far, counting those finished by earlier runs."""
        return self._progress.position

    @property
    def resumed_from(self) -> int:
        """The position the previous runs had reached (0 on a fresh start)."""
        return self._progress.resumed_from

    @property
    def complete(self) -> bool:
        """True once the source is exhausted: every item is finished."""
        return self._progress.complete

    @property
    def stopped(self) -> bool:
        """True when the loop ended because shutdown started (``grace.stopping``)."""
        return self._progress.stopped

    def __repr__(self) -> str:
        p = self._progress
        return (
            f"<Checkpointed key={p.key!r} position={p.position} "
            f"complete={p.complete} stopped={p.stopped}>"
        )

    def _start(self) -> None:
        if self._started:
            raise StateError("a checkpointed() iteration runs once; call checkpointed() again")
        self._started = True

    def _should_stop(self) -> bool:
        if self._grace is not None and self._grace.stopping:
            self._progress.stopped = True
            # The last item finished just as the shutdown came: the work is done,
            # not "retry me". Only a source that knows its length can say so
            # without taking another item.
            items = self._items
            if isinstance(items, Sized) and self._progress.position >= len(items):
                self._progress.complete = True
            return True
        return False

    def _mark_incomplete(self) -> None:
        """An iteration that did not reach its end: the job is not done ("retry me").

        One that did (perhaps resuming an earlier one of this grace that
        stopped midway) withdraws that earlier mark: the job is done now.
        """
        p = self._progress
        if self._grace is None:
            return
        verdict, key = self._grace._v, f"checkpoint:{p.key}"
        if p.complete:
            verdict.mark_done(key)
        else:
            verdict.mark_incomplete(
                f"checkpoint {p.key!r} stopped at position {p.position}", key=key
            )

    def _install_hook(self) -> None:
        grace, progress = self._grace, self._progress
        if grace is None or grace.stopping:
            return

        def save_checkpoint() -> None:
            self._mark_incomplete()  # the loop was never closed: it did not finish
            progress.save()

        grace.on_shutdown(order=HOOK_ORDER, name=f"checkpoint {progress.key}")(save_checkpoint)
        self._hook = save_checkpoint

    def _remove_hook(self) -> None:
        """After the iterator's own final save: a grace may outlive many iterations."""
        if self._grace is not None and self._hook is not None:
            self._grace._c.hooks.unregister(self._hook)
            self._hook = None

    def __iter__(self) -> Generator[T, None, None]:
        """Iterate a sync source, saving with the store's sync methods."""
        if not isinstance(self._items, Iterable):
            raise TypeError("checkpointed() over an async iterable needs `async for`")
        self._start()
        return self._run(self._items)

    def _run(self, items: Iterable[T]) -> Generator[T, None, None]:
        p = self._progress
        p.begin(p.store.load(p.key))
        if p.complete:
            self._mark_incomplete()  # done: withdraws a mark of an earlier iteration
            p.finished()
            return
        self._install_hook()
        it = iter(items)
        try:
            skipped = sum(1 for _ in zip(range(p.position), it, strict=False))
            if skipped < p.position:  # the source is shorter than before
                p.complete = True
            while not p.complete and not self._should_stop():
                try:
                    item = next(it)
                except StopIteration:
                    p.complete = True
                    break
                yield item
                p.position += 1
                if p.due():
                    p.save()
        finally:
            self._mark_incomplete()
            p.save()  # if this raises, the hook stays and tries again at shutdown
            self._remove_hook()
            p.finished()

    def __aiter__(self) -> AsyncGenerator[T, None]:
        """Iterate a sync or async source, saving with the store's async methods.

        Leaving ``async for`` early (``break``, an exception) does not close an
        async generator at once; the final save then happens when the event
        loop finalises it, or in the shutdown hook. To save at once, iterate
        inside ``contextlib.aclosing(aiter(run))``.
        """
        self._start()
        return self._arun()

    async def _arun(self) -> AsyncGenerator[T, None]:
        p = self._progress
        p.begin(await p.store.aload(p.key))
        if p.complete:
            self._mark_incomplete()  # done: withdraws a mark of an earlier iteration
            p.finished()
            return
        self._install_hook()
        it = _as_async_iterator(self._items)
        try:
            skipped = 0
            while skipped < p.position:
                try:
                    await anext(it)
                except StopAsyncIteration:
                    p.complete = True
                    break
                skipped += 1
            while not p.complete and not self._should_stop():
                try:
                    item = await anext(it)
                except StopAsyncIteration:
                    p.complete = True
                    break
                yield item
                p.position += 1
                if p.due():
                    await p.asave()
        finally:
            self._mark_incomplete()
            await p.asave()
            self._remove_hook()
            p.finished()


async def _iterate_sync(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


def _as_async_iterator(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        return aiter(items)
    return _iterate_sync(items)


def checkpointed(
    items: Iterable[T] | AsyncIterable[T],
    store: CheckpointStore,
    *,
    key: str = "checkpointed",
    every: int | None = 100,
    every_seconds: float | None = 10.0,
    grace: Grace | AsyncGrace | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Checkpointed[T]:
    """Iterate ``items`` so that a later run resumes where this one stopped.

    An item counts as finished when the loop asks for the next one (or the
    loop ends normally after it). The position — how many items are finished —
    is saved to ``store`` under ``key`` every ``every`` finished items and
    every ``every_seconds`` seconds (checked as items finish), and once more
    when the iteration ends for any reason. A new run loads it and skips that
    many items of ``items``, which must therefore yield the same items in the
    same order on every run. Once complete, a rerun yields nothing: clear the
    key (``store.clear(key)``) or use a new key (e.g. one per date) to start
    over.

    ``grace`` is the :class:`spotgrace.Grace` or :class:`spotgrace.AsyncGrace`
    of the enclosing ``spotgrace.graceful()`` block; it is passed explicitly,
    never looked up. With it, the loop ends without taking a new item once
    ``grace.stopping`` is true (the item in hand is finished first), and a
    shutdown hook (``order=-100``, so before hooks of the default order 0) saves
    the final position within the shutdown budget even when the loop body was
    cancelled or interrupted and the iterator was never closed (the hook is
    removed once the iterator has saved by itself). Without it,
    shutdown is not noticed: the loop runs until the source ends or the body
    raises.

    Delivery is at least once: after a crash or ``kill -9`` up to ``every``
    items are processed again (the unsaved ones, plus the one in hand). Make
    the work per item idempotent.

    ``for`` needs a sync ``items``; ``async for`` takes either kind.
    """
    check_key(key)
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise ValueError(f"every must be an int >= 1 or None, not {every!r}")
    if every_seconds is not None and not (
        isinstance(every_seconds, int | float)
        and math.isfinite(every_seconds)
        and every_seconds > 0
    ):
        raise ValueError(f"every_seconds must be a positive number or None, not {every_seconds!r}")
    if not isinstance(items, Iterable | AsyncIterable):
        raise TypeError(f"checkpointed() needs an iterable or async iterable, not {items!r}")
    return Checkpointed(items, _Progress(store, key, every, every_seconds, clock), grace)
