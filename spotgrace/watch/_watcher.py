"""The polling engine behind :mod:`spotgrace.watch`.

One asyncio task per source; in an async app they run in its event loop, in
a sync app in a daemon thread with a loop of its own (the same code either
way). Nothing a source does can raise into the app: every failure is logged
(rate-limited) and retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from .._core._errors import StateError
from .._core._eventlog import emit
from .._metadata import _fetch, _http11
from .._metadata._strict import SourceUnavailable

if TYPE_CHECKING:
    from ._notice import Source, WatchNotice

__all__ = ["DEFAULT_INTERVAL", "Watcher", "log_event"]

#: AWS suggests polling instance metadata every 5 s; on a 120 s Spot warning
#: (or a 30 s stop_timeout) that costs at most 5 s of the budget, for a CPU
#: cost measured in docs/early-warning.md.
DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_WARN_EVERY = 60.0

#: A notice of a source and kind already seen is delivered again only when its
#: time is at least this much earlier.
_EARLIER_BY = timedelta(seconds=1)

log_event = emit


@dataclass
class _SourceState:
    polls: int = 0
    errors: int = 0
    notices: int = 0
    failures: int = 0  # consecutive
    suppressed: int = 0
    last_warning: float = -float("inf")


class Watcher:
    """Polls ``sources`` and calls ``on_notice`` once per new notice.

    ``interval``: seconds between polls of one source; each wait is shortened
    by up to ``jitter`` x ``interval`` at random, so it is never longer than
    ``interval``. ``timeout``: total seconds for one request. ``max_body``:
    bytes; a longer answer is an error. After consecutive errors the wait
    doubles, up to ``max_backoff`` (default and upper bound: 2 x ``interval``),
    so that once the endpoint answers again a notice is seen within two
    intervals (plus one ``timeout`` when the endpoint was slow). Warnings about
    a failing source are logged on the first failure, then at most once per
    ``warn_every`` seconds. A notice is delivered once per source and kind; a
    later one is delivered again only if it brings the time earlier (a
    ``within`` that is re-read at every poll is not a new notice).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        on_notice: Callable[[WatchNotice], object],
        interval: float = DEFAULT_INTERVAL,
        jitter: float = 0.1,
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = _fetch.DEFAULT_MAX_BODY,
        max_backoff: float | None = None,
        warn_every: float = DEFAULT_WARN_EVERY,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        if not timeout > 0 or max_body < 1:
            raise ValueError("timeout must be > 0 and max_body >= 1")
        self.sources = tuple(sources)
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        self.on_notice = on_notice
        self.interval = interval
        self.jitter = jitter
        self.timeout = timeout
        self.max_body = max_body
        if max_backoff is not None and not max_backoff > 0:
            raise ValueError(f"max_backoff must be > 0, got {max_backoff!r}")
        cap = 2 * interval
        self.max_backoff = cap if max_backoff is None else min(max_backoff, cap)
        self.warn_every = warn_every
        self._transport = transport
        self._clock = clock
        self._seen: dict[tuple[str, str], datetime | None] = {}
        self._stats = {s.name: _SourceState() for s in self.sources}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Poll until cancelled. Never raises anything but ``CancelledError``."""
        if not self.sources:
            return
        if self._transport is None:
            client = _fetch.async_client(self.timeout)
        else:  # tests: httpx.MockTransport for what a real server cannot do
            client = httpx.AsyncClient(transport=self._transport, trust_env=False)
        # Plain http:// (every metadata endpoint): the small keep-alive client, a
        # third of httpx's CPU per poll (docs/benchmarks-http.md); httpx otherwise.
        light = _http11.Http11Client() if self._transport is None else None

        async def fetch(
            method: str, url: str, *, headers: Mapping[str, str] | None = None
        ) -> _fetch.Answer:
            if light is not None and url.startswith("http://"):
                return await light.fetch(
                    method, url, time_limit=self.timeout, max_body=self.max_body, headers=headers
                )
            return await _fetch.fetch(
                client,
                method,
                url,
                time_limit=self.timeout,
                max_body=self.max_body,
                headers=headers,
            )

        log_event(
            "info",
            "watch.started",
            sources=[s.name for s in self.sources],
            interval=self.interval,
        )
        try:
            async with client:
                try:
                    await asyncio.gather(*(self._poll_forever(s, fetch) for s in self.sources))
                finally:
                    if light is not None:
                        await light.aclose()
        finally:
            log_event("debug", "watch.stopped", statistics=self.statistics())

    async def _poll_forever(self, source: Source, fetch: Any) -> None:
        state = self._stats[source.name]
        while True:
            started = self._clock()
            wait = self.interval
            try:
                state.polls += 1
                notices = await source.poll(fetch)
            except SourceUnavailable as exc:
                log_event("info", "watch.unavailable", source=source.name, error=str(exc))
                return
            except Exception as exc:
                self._failed(source.name, state, exc)
                wait = min(self.max_backoff, self.interval * 2 ** min(state.failures - 1, 16))
            else:
                if state.failures:
                    log_event(
                        "info", "watch.recovered", source=source.name, failures=state.failures
                    )
                    state.failures = state.suppressed = 0
                    state.last_warning = -float("inf")
                for notice in notices:
                    self._deliver(state, notice)
            wait *= 1 - self.jitter * random.random()
            await asyncio.sleep(max(0.0, started + wait - self._clock()))

    def _failed(self, name: str, state: _SourceState, exc: Exception) -> None:
        state.errors += 1
        state.failures += 1
        now = self._clock()
        if now - state.last_warning < self.warn_every:
            state.suppressed += 1
            return
        log_event(
            "warning",
            "watch.error",
            source=name,
            error=str(exc) or type(exc).__name__,
            failures=state.failures,
            suppressed=state.suppressed,
        )
        state.last_warning = now
        state.suppressed = 0

    def _deliver(self, state: _SourceState, notice: WatchNotice) -> None:
        key = (notice.source, notice.kind)
        if key in self._seen:
            before = self._seen[key]
            new = notice.time
            if new is None or (before is not None and new >= before - _EARLIER_BY):
                return  # the same notice again (or a later time, which changes nothing)
        self._seen[key] = notice.time
        state.notices += 1
        within = notice.within()
        try:  # the notice first: logging may be slow
            self.on_notice(notice)
        except Exception as exc:
            log_event("error", "watch.callback_failed", source=notice.source, error=repr(exc))
        log_event(
            "warning",
            "watch.notice",
            source=notice.source,
            kind=notice.kind,
            reason=notice.reason,
            within=within,
        )

    def statistics(self) -> dict[str, dict[str, int]]:
        """Per source: ``polls``, ``errors``, ``notices`` so far."""
        return {
            name: {"polls": s.polls, "errors": s.errors, "notices": s.notices}
            for name, s in self._stats.items()
        }

    # ------------------------------------------------------------------ hosting

    def start_task(self) -> asyncio.Task[None]:
        """Run in the current event loop; stop with :meth:`aclose`."""
        if self._task is not None or self._thread is not None:
            raise StateError("this Watcher is already started")
        self._task = asyncio.get_running_loop().create_task(self.run(), name="spotgrace-watch")
        return self._task

    async def aclose(self) -> None:
        """Cancel the task started by :meth:`start_task` and wait for it."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def start_thread(self) -> None:
        """Run in a daemon thread with its own event loop; stop with :meth:`close`."""
        if self._task is not None or self._thread is not None:
            raise StateError("this Watcher is already started")
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            task = loop.create_task(self.run(), name="spotgrace-watch")
            self._loop = loop
            self._thread_task = task
            ready.set()
            try:
                loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="spotgrace-watch", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread started by :meth:`start_thread` (waits up to ``timeout``)."""
        thread, loop, task = self._thread, self._loop, self._thread_task
        if thread is None or loop is None or task is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already finished
            loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout)
        self._thread = None
        self._loop = None
