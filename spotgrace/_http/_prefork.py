"""State shared by a pre-fork server's master and its forked workers (gunicorn).

The master owns the notice and the budget; the workers serve. They share one
small anonymous ``MAP_SHARED`` memory page, created in the master before the
first fork and inherited by every worker, so a flag the master sets is seen by
every worker at once, with no message to pass and no process to wake:

    byte 0      1 once the notice came (readiness red, ``Connection: close``)
    byte 1      1 once intake must stop (answer 503 + ``Retry-After``)
    byte 2      1 once a worker's own shutdown was not clean (hooks failed)
    bytes 8-15  the workers' deadline: ``time.monotonic()`` seconds (``CLOCK_MONOTONIC``
                is one clock for every process of the machine), ``inf`` = none

Nothing here imports a server or a framework.
"""

from __future__ import annotations

import itertools
import math
import mmap
import struct
import threading
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager

__all__ = ["SharedState", "WorkerGrace", "current", "install"]

_NOTICE, _STOPPING, _FAILED = 0, 1, 2
_DEADLINE = 8
_SIZE = 16


class SharedState:
    """The flags a master sets and its workers read (see the module docstring)."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, _SIZE)  # anonymous and MAP_SHARED: survives fork() shared
        self._mem[_NOTICE] = 0
        self._mem[_STOPPING] = 0
        self._mem[_FAILED] = 0
        struct.pack_into("d", self._mem, _DEADLINE, math.inf)

    @property
    def noticed(self) -> bool:
        """True once the master has had the notice."""
        return self._mem[_NOTICE] == 1

    @property
    def stopping(self) -> bool:
        """True once intake must stop."""
        return self._mem[_STOPPING] == 1

    @property
    def worker_failed(self) -> bool:
        """True once a worker reported an unclean shutdown of its own."""
        return self._mem[_FAILED] == 1

    def set_noticed(self) -> None:
        """Readiness red in every worker (safe in a signal handler: one byte store)."""
        self._mem[_NOTICE] = 1

    def set_stopping(self, workers_deadline: float) -> None:
        """Intake stops; workers must be done by ``workers_deadline`` (``time.monotonic()``)."""
        struct.pack_into("d", self._mem, _DEADLINE, workers_deadline)
        self._mem[_NOTICE] = 1
        self._mem[_STOPPING] = 1

    def set_worker_failed(self) -> None:
        """A worker's shutdown was not clean (the master's exit code will say so)."""
        self._mem[_FAILED] = 1

    def worker_remaining(self) -> float:
        """Seconds the workers have left (``inf`` before intake stops)."""
        deadline: float = struct.unpack_from("d", self._mem, _DEADLINE)[0]
        return max(0.0, deadline - time.monotonic())


class _Counter:
    """In-flight requests of one worker process (its threads or its event loop).

    Two C counters, no lock: ``next(started)`` when a request starts,
    ``next(ended)`` when it ends (each call is atomic under the GIL).
    """

    def __init__(self) -> None:
        self.started = itertools.count()
        self.ended = itertools.count()
        self._reading = threading.Lock()  # readers only: requests never take it

    @property
    def count(self) -> int:
        """Requests started and not ended yet (a read advances both counters alike).

        Readers take turns: two interleaved reads would each see the other's
        advance of one counter only (a count one below the truth).
        """
        with self._reading:
            ended = next(self.ended)  # first: the difference is never below the true count
            return next(self.started) - ended


class WorkerGrace:
    """What a request handler in a worker needs, read from the master's :class:`SharedState`.

    It has the shape of ``spotgrace.Grace`` / ``spotgrace.AsyncGrace`` that the
    HTTP middlewares use: ``ready``, ``stopping``, ``remaining()``,
    ``inflight()`` (``with`` and ``async with``) and ``wait()``.
    """

    def __init__(self, state: SharedState) -> None:
        self.state = state
        #: The shared page itself (byte 0: the notice, byte 1: intake stopped), for a
        #: hot path that reads a flag without two property calls.
        self.flags = state._mem
        #: This worker's in-flight requests (the WSGI middleware counts into it directly).
        self.counter = _Counter()
        self._scope = _Scope(self.counter)  # no per-use state: one serves every request
        #: Set by a worker whose shutdown was not clean before its hooks ran (requests
        #: cancelled at its deadline): it reports a failed exit (``spotgrace.gunicorn``).
        self.unclean = False

    @property
    def ready(self) -> bool:
        """Readiness: False from the master's notice on."""
        return not self.state.noticed

    @property
    def stopping(self) -> bool:
        """True once the master stopped intake."""
        return self.state.stopping

    @property
    def inflight_count(self) -> int:
        """Requests of this worker being handled now."""
        return self.counter.count

    def remaining(self) -> float:
        """Seconds this worker has left (``inf`` until intake stops)."""
        return self.state.worker_remaining()

    def inflight(self) -> _Scope:
        """Count a request as in flight (``with`` or ``async with``)."""
        return self._scope

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until intake must stop (polled every 20 ms); False if ``timeout`` passed first."""
        import asyncio

        end = math.inf if timeout is None else time.monotonic() + timeout
        while not self.state.stopping:
            if time.monotonic() >= end:
                return False
            await asyncio.sleep(0.02)
        return True


class _Scope(AbstractContextManager["_Scope"], AbstractAsyncContextManager["_Scope"]):
    __slots__ = ("_counter",)

    def __init__(self, counter: _Counter) -> None:
        self._counter = counter

    def __enter__(self) -> _Scope:
        next(self._counter.started)
        return self

    def __exit__(self, *exc: object) -> None:
        next(self._counter.ended)

    async def __aenter__(self) -> _Scope:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


_installed: list[SharedState] = []  # the master's state, inherited by its workers


def install(state: SharedState) -> None:
    """Make ``state`` the one :func:`current` returns (in the master, before forking)."""
    _installed[:] = [state]
    _grace.clear()


_grace: list[WorkerGrace] = []


def current() -> WorkerGrace | None:
    """The grace of this worker, if a pre-fork master installed shared state; else None."""
    if not _installed:
        return None
    if not _grace:
        _grace.append(WorkerGrace(_installed[0]))
    return _grace[0]
