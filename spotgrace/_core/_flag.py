"""A flag that threads and event loops can both wait on, without polling."""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["Flag"]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Flag:
    """A thread-safe event: ``set()`` from any thread wakes sync and async waiters.

    Sync waiters block on a :class:`threading.Event`; async waiters get a
    future on their own loop, resolved with ``call_soon_threadsafe``. ``clear()``
    makes it reusable (the in-flight tracker's "zero" flag goes up and down).
    """

    def __init__(self, *, initially: bool = False) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if initially:
            self._event.set()

    def is_set(self) -> bool:
        """Whether the flag is up."""
        return self._event.is_set()

    def set(self) -> None:
        """Raise the flag and wake every waiter, sync and async. Idempotent."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            # The loop may be closed if its owner went away; nothing waits then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, fut)

    def clear(self) -> None:
        """Lower the flag; later waiters block until the next ``set()``."""
        with self._lock:
            self._event.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until set; False if ``timeout`` passed first."""
        return self._event.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait in the running loop until set; False if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return True
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            if timeout is None:
                await fut
                return True
            try:
                async with asyncio.timeout(timeout):
                    await fut
            except TimeoutError:
                return self._event.is_set()
            return True
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)
