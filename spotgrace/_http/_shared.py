"""What the aiohttp and ASGI integrations share: probe paths, the 503, closing idle connections.

Nothing here imports a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ._handshakes import (
    cookie_handshakes_possible,
    drop_new_handshakes,
    handshakes_in_progress,
    has_ipv6,
    tcp_ports,
)

__all__ = [
    "GraceLike",
    "HttpOptions",
    "close_idle_connections",
    "close_listeners",
    "readiness",
]

#: How often the idle-connection grace checks whether every connection is gone.
_POLL = 0.005


class GraceLike(Protocol):
    """The part of ``spotgrace.AsyncGrace`` the HTTP integrations use."""

    @property
    def ready(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    def remaining(self) -> float: ...

    def inflight(self) -> AbstractAsyncContextManager[Any]: ...

    async def wait(self, timeout: float | None = None) -> bool: ...


class Readiness(Protocol):
    """Anything with a ``ready`` flag."""

    @property
    def ready(self) -> bool: ...


def readiness(grace: GraceLike) -> Readiness:
    """Where a hot path reads ``grace.ready`` without a property call.

    A spotgrace grace's readiness is its coordinator's plain attribute; for any
    other :class:`GraceLike` it is the object itself.
    """
    coordinator = getattr(grace, "_c", None)
    if isinstance(getattr(coordinator, "ready", None), bool):
        return cast(Readiness, coordinator)
    return grace


def _path(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{name} must be a path starting with '/', or None; got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """The options the HTTP integrations share (validated on creation).

    ``readyz`` / ``healthz``: the probe paths (``None`` or ``""`` = no probe).
    ``retry_after``: seconds sent in ``Retry-After`` with the 503 answered once
    intake is closed. ``idle_grace``: seconds an idle keep-alive connection is
    left open after intake closes, for a request that may already be on its way
    (it is answered 503 with ``Connection: close``); then it is closed.
    """

    readyz: str | None = "/readyz"
    healthz: str | None = "/healthz"
    retry_after: int = 5
    idle_grace: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "readyz", _path("readyz", self.readyz))
        object.__setattr__(self, "healthz", _path("healthz", self.healthz))
        if self.readyz is not None and self.readyz == self.healthz:
            raise ValueError(f"readyz and healthz must differ, both are {self.readyz!r}")
        if isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int):
            raise TypeError(f"retry_after must be an int of seconds, got {self.retry_after!r}")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be 0 or more, got {self.retry_after!r}")
        grace = self.idle_grace
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise TypeError(f"idle_grace must be a number of seconds, got {grace!r}")
        if math.isnan(grace) or math.isinf(grace) or grace < 0:
            raise ValueError(f"idle_grace must be a finite number 0 or more, got {grace!r}")


UNAVAILABLE_BODY = b"503 Service Unavailable: shutting down\n"


async def close_listeners(
    listeners: Iterable[asyncio.Server],
    protocol_factory: Callable[[], asyncio.BaseProtocol],
) -> None:
    """Stop intake: close the listening sockets without losing a connection already made.

    A client may have connected a moment ago (e.g. one that reconnected after a
    ``Connection: close`` answer): the kernel completed the handshake, or is
    completing it, or the loop accepted it but has not attached it yet. Closing
    the listener then would reset that connection and its request. So the
    kernel drops new SYNs (Linux), the handshakes under way complete and are
    accepted (at most :data:`HANDSHAKE_WAIT` s), the loop stops accepting,
    pending attachments finish, the kernel's queue is emptied with non-blocking
    ``accept()`` calls, and only then (no await in between) the listener
    closes. The connections taken are served like any other (their requests
    get the 503 of a closed intake).
    """
    loop = asyncio.get_running_loop()
    servers = list(listeners)
    socks = [sock for server in servers for sock in (server.sockets or ())]
    fds = [sock.fileno() for sock in socks]
    # 1. The kernel drops new SYNs (Linux): a client connecting from now on is
    #    not queued; its SYN is retried and then refused once the socket is
    #    closed. Without this, one connecting in the moment between step 3's
    #    last accept() and the close would be reset. Handshakes already under
    #    way complete (their ACK passes) and are accepted as usual, so wait for
    #    them: closing with one under way resets a client that believes it is
    #    connected and has written its request.
    for fd in fds:
        drop_new_handshakes(fd)
    await _handshakes_done(tcp_ports(socks), has_ipv6(socks), limit=HANDSHAKE_WAIT)
    # 2. The loop stops accepting. (Closing right away is not enough: a
    #    connection the loop accepted in this iteration is attached to its server
    #    in a task that has not run yet; once the server is closed that task fails
    #    and the connection is orphaned until exit.) Then let those attachments run.
    for fd in fds:
        with contextlib.suppress(Exception):  # a loop without readers (uvloop): skip
            loop.remove_reader(fd)
    for _ in range(2):
        await asyncio.sleep(0)
    # 3. Take what is queued in the kernel and close, with no await in between.
    taken = [conn for fd in fds for conn in _accept_queued(fd)]
    for server in servers:
        server.close()
    for conn in taken:
        await loop.connect_accepted_socket(protocol_factory, conn)


#: The longest ``close_listeners`` waits for handshakes under way (an ACK takes
#: one round trip; a lost one is retransmitted only after a second).
HANDSHAKE_WAIT = 0.25


async def _handshakes_done(ports: set[int], ipv6: bool, *, limit: float) -> bool:
    """Wait (the loop still accepting) until no handshake to ``ports`` is under way.

    The kernel's answer takes a few ms on a large connection table (it walks
    it), so it is asked from a thread: the loop keeps serving meanwhile.
    ``limit`` holds even if the thread is slow to answer. Handshakes answered
    with a SYN cookie are invisible: if there may be some, the whole ``limit``.
    """
    if cookie_handshakes_possible():
        await asyncio.sleep(limit)  # the loop accepts their connections meanwhile
        return False
    end = time.monotonic() + limit
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        try:
            count = await asyncio.wait_for(
                asyncio.to_thread(handshakes_in_progress, ports, ipv6=ipv6), left
            )
        except (TimeoutError, RuntimeError):  # RuntimeError: no thread can start (RLIMIT_NPROC)
            return False
        if not count:
            return True
        await asyncio.sleep(_POLL)


def _accept_queued(fd: int) -> list[socket.socket]:
    if fd < 0:
        return []
    out: list[socket.socket] = []
    dup = socket.socket(fileno=os.dup(fd))
    try:
        dup.setblocking(False)
        while True:
            try:
                conn, _ = dup.accept()
            except OSError:  # BlockingIOError: nothing queued; anything else: stop trying
                break
            out.append(conn)
    finally:
        dup.close()
    return out


async def close_idle_connections(
    connections: Callable[[], Collection[object]],
    close: Callable[[], None],
    *,
    grace: float,
    remaining: Callable[[], float],
) -> bool:
    """After intake closed: wait until no connection is left, at most ``grace`` seconds.

    Connections that had a request in flight close themselves after answering
    it (its response carries ``Connection: close``); a request arriving on an
    idle one is answered 503 with ``Connection: close``. What is still open
    after ``grace`` (capped by half of what is left of the budget) is handed to
    ``close``, which closes idle connections and makes busy ones close after
    their response. Returns True if every connection went away by itself.
    """
    limit = min(grace, max(0.0, remaining()) / 2)
    deadline = time.monotonic() + limit
    while connections():
        if time.monotonic() >= deadline:
            close()
            return False
        await asyncio.sleep(_POLL)
    return True
