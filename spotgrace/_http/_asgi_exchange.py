"""ASGI exchanges: one request or WebSocket passing through ``GraceMiddleware``.

:class:`Exchange` is the full path (``Connection: close`` after the notice, the
going-away close of long-lived exchanges); :class:`LeanExchange` is a request
that began before the notice on the middleware used alone, which costs a flag
check per message until the notice and then turns into an :class:`Exchange`.
Nothing here imports a web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._shared import GraceLike

__all__ = [
    "GOING_AWAY",
    "ASGIApp",
    "Exchange",
    "Gate",
    "LeanExchange",
    "Message",
    "Receive",
    "Send",
    "plain",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLOSE = (b"connection", b"close")
_EVENT_STREAM = b"text/event-stream"
#: WebSocket close code 1001, "going away": the server is shutting down.
GOING_AWAY = 1001


async def plain(
    send: Send,
    status: int,
    body: bytes,
    grace: GraceLike,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    if not grace.ready:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Exchange:
    """One request or WebSocket passing through the middleware.

    Adds ``Connection: close`` once the notice has come, and, for the
    long-lived kinds (WebSocket, event stream), ends the exchange cleanly when
    intake closes: the peer gets a close frame / the end of the body, the app
    gets a disconnect message, and whatever the app sends afterwards is dropped.
    """

    __slots__ = (
        "app",
        "cut",
        "finished",
        "grace",
        "lock",
        "pending",
        "send",
        "watcher",
        "websocket",
    )

    def __init__(self, app: ASGIApp, grace: GraceLike, *, websocket: bool = False) -> None:
        self.app = app
        self.grace = grace
        self.websocket = websocket
        self.finished = False  # the response is complete / the close frame sent
        # Made only for the long-lived kinds (an accepted WebSocket, an event stream):
        self.watcher: asyncio.Task[None] | None = None  # waits for intake to close
        self.cut: asyncio.Event | None = None  # set once we ended the exchange
        self.lock: asyncio.Lock | None = None  # one sender at a time: the app or us
        # The server's receive() under way while a cut is watched for (see _wrap_receive).
        self.pending: asyncio.Future[Message] | None = None

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.send = send
        try:
            await self.app(scope, self._wrap_receive(receive), self._send)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """When the exchange ends: the watcher and a receive left under way go."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher

    def _wrap_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            cut = self.cut
            if cut is None:  # an ordinary request: straight through
                return await receive()
            if cut.is_set():
                return self._disconnect()
            # A receive the app gave up on (``wait_for(receive(), t)`` cancels this one)
            # is kept for its next call: left behind, it would take the next message.
            real = self.pending
            if real is None:
                real = self.pending = asyncio.ensure_future(receive())
            cutting = asyncio.ensure_future(cut.wait())
            both: set[asyncio.Future[Any]] = {real, cutting}
            try:
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cutting.cancel()
            self.pending = None
            if real.done():
                return real.result()
            real.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await real
            return self._disconnect()

        return wrapped

    def _disconnect(self) -> Message:
        if self.websocket:
            return {"type": "websocket.disconnect", "code": GOING_AWAY}
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            message = self._response_start(message)
        elif kind == "http.response.body":
            if not message.get("more_body", False):
                self.finished = True
        elif kind == "websocket.accept":
            self._watch()
        elif kind == "websocket.close":
            self.finished = True
        if self.lock is None:
            await self.send(message)
            return
        async with self.lock:  # not while _going_away is sending
            if not self.cut or not self.cut.is_set():  # after the cut, drop what the app sends
                await self.send(message)

    def _response_start(self, message: Message) -> Message:
        headers = message.get("headers", ())
        closing = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type" and value.startswith(_EVENT_STREAM):
                self._watch()
            elif lower == b"connection" and value.lower() == b"close":
                closing = True
        if closing or self.grace.ready:
            return message
        return {**message, "headers": [*headers, _CLOSE]}

    def _watch(self) -> None:
        self.cut = asyncio.Event()
        self.lock = asyncio.Lock()
        self.watcher = asyncio.ensure_future(self._going_away(self.lock, self.cut))

    async def _going_away(self, lock: asyncio.Lock, cut: asyncio.Event) -> None:
        """When intake closes, end a long-lived exchange the app has not finished."""
        await self.grace.wait()
        async with lock:
            if self.finished:
                return
            cut.set()
            self.finished = True
            with contextlib.suppress(OSError, RuntimeError):
                if self.websocket:
                    await self.send(
                        {"type": "websocket.close", "code": GOING_AWAY, "reason": "shutting down"}
                    )
                else:
                    await self.send({"type": "http.response.body", "body": b""})


class Gate:
    """Whether lean requests may start: open until the notice (the middleware closes it).

    ``grace``: what a :class:`LeanExchange` takes the full path's state from.
    """

    __slots__ = ("grace", "open")

    def __init__(self, grace: GraceLike, *, lean: bool) -> None:
        self.grace = grace
        self.open = lean


class LeanExchange(Exchange):
    """A request that began before the notice, on the middleware used alone.

    Until the notice, :meth:`lean_send` and :meth:`lean_receive` are plain
    functions handing back the server's own awaitable (no coroutine frame of
    their own); the send remembers the first and the last message. At the
    notice :meth:`switch` (the middleware's take-over, or the first message
    after the notice, whichever comes first) makes it an :class:`Exchange`:
    ``Connection: close`` on a response not started yet, and an event stream
    already under way is ended when intake closes. ``ended`` is set by the
    middleware when the app returns (or raises).
    """

    __slots__ = ("ended", "first", "gate", "last", "raw_receive", "switched")

    def __init__(self, gate: Gate, send: Send, receive: Receive) -> None:
        # Per request: only what the lean path reads; switch() sets the rest.
        self.gate = gate
        self.send = send
        self.raw_receive = receive
        self.first: Message | None = None
        self.last: Message | None = None
        self.switched = self.ended = False

    def lean_send(self, message: Message) -> Awaitable[None]:
        """The ``send`` the app gets."""
        if self.gate.open:
            if self.first is None:
                self.first = message
            self.last = message
            return self.send(message)
        self.switch()
        return self._send(message)

    def lean_receive(self) -> Awaitable[Message]:
        """The ``receive`` the app gets: the server's own until an event stream is cut."""
        if not self.switched or self.cut is None:
            return self.raw_receive()
        return self._wrap_receive(self.raw_receive)()

    def switch(self) -> None:
        """From the notice on: take the full path's state. Idempotent."""
        if self.switched:
            return
        self.switched = True
        self.grace = self.gate.grace
        self.websocket = False
        self.watcher = None
        self.lock = None
        self.cut = None
        self.pending = None
        last = self.last
        self.finished = (
            last is not None
            and last["type"] == "http.response.body"
            and not last.get("more_body", False)
        )
        first = self.first
        if self.finished or first is None or first["type"] != "http.response.start":
            return
        for name, value in first.get("headers", ()):
            if name.lower() == b"content-type" and value.startswith(_EVENT_STREAM):
                self._watch()  # under way since before the notice: ended when intake closes
                return

    async def stop_watching(self) -> None:
        """When the request ends: cancel the going-away watcher, if one was started."""
        if self.switched:
            await self._stop()
