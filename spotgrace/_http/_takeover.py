"""Zero cost until the notice: take in-flight requests from the server's own bookkeeping.

Before the notice the integrations run a request straight through (one check
of the readiness flag and a prefix check of the path for the probes); they do
not open a ``grace.inflight()`` scope per request. At the notice they look at
what the server itself knows: which connections are inside a request, which
request tasks run. Those requests are *taken over*: their responses carry
``Connection: close`` and each is held in flight (``grace.inflight()``) until
its task ends, so the drain waits for it. Requests that start after the
notice take the full path (in-flight scope, 503 once intake is closed).

This reads private attributes of the servers, for the versions listed in
:data:`UVICORN_RANGE` and :data:`AIOHTTP_RANGE` (the same ranges as the
``asgi`` and ``aiohttp`` extras). On another version, or another protocol
class, :func:`uvicorn_unsupported` / :func:`aiohttp_unsupported` say why and
the integrations take the full path for every request, as before: slower,
never wrong. ``tests/test_takeover.py`` fails on a version that changes them.

Nothing here imports a web framework (their objects are used duck-typed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, cast

from .._core._eventlog import emit
from .._core._inflight import InflightTracker
from ._shared import GraceLike

__all__ = [
    "AIOHTTP_RANGE",
    "UVICORN_RANGE",
    "UvicornBook",
    "adopt",
    "aiohttp_busy_tasks",
    "aiohttp_unsupported",
    "uvicorn_state_of",
    "uvicorn_unsupported",
]

#: Versions whose private attributes the takeover was written and tested for:
#: ``(lowest, first not supported)``; keep in step with pyproject's extras.
UVICORN_RANGE = ((0, 30), (0, 60))
AIOHTTP_RANGE = ((3, 9), (3, 15))

_CLOSE = (b"connection", b"close")
_EVENT_STREAM = b"text/event-stream"


def _version(dist: str) -> tuple[int, int] | None:
    try:
        text = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _outside(dist: str, bounds: tuple[tuple[int, int], tuple[int, int]]) -> str | None:
    found = _version(dist)
    low, high = bounds
    if found is None or not low <= found < high:
        shown = "unknown" if found is None else ".".join(map(str, found))
        return (
            f"{dist} {shown} is outside the range spotgrace's takeover supports "
            f"({'.'.join(map(str, low))} <= version < {'.'.join(map(str, high))})"
        )
    return None


def _init_names(cls: type) -> set[str]:
    """The names ``cls.__init__`` itself uses (the attributes it sets among them)."""
    code = getattr(vars(cls).get("__init__"), "__code__", None)
    return set(code.co_names) if code is not None else set()


# ---------------------------------------------------------------------- uvicorn


def uvicorn_unsupported(
    protocol_class: object, cycles: Mapping[object, type], server_state_class: type
) -> str | None:
    """Why the uvicorn takeover cannot be used here, or None if it can.

    ``cycles``: each supported uvicorn HTTP protocol class (``H11Protocol``,
    ``HttpToolsProtocol`` when httptools is installed) mapped to its
    ``RequestResponseCycle``; ``server_state_class``: uvicorn's ``ServerState``
    (the caller imports uvicorn, this module does not).
    """
    reason = _outside("uvicorn", UVICORN_RANGE)
    if reason:
        return reason
    # Both cycles add ``Connection: close`` to a response not started yet once
    # ``keep_alive`` is False (h11: when the request's headers carry it) and close after it.
    cycle_class = cycles.get(protocol_class)
    if cycle_class is None:
        names = " or ".join(getattr(c, "__name__", repr(c)) for c in cycles)
        return f"the HTTP protocol class is {protocol_class!r}, not uvicorn's {names}"
    missing = sorted({"connections", "tasks"} - _init_names(server_state_class))
    if missing:
        return f"uvicorn's ServerState has no {', '.join(missing)}"
    if "cycle" not in _init_names(cast("type", protocol_class)):
        return f"uvicorn's {getattr(protocol_class, '__name__', '?')} has no cycle"
    assigned = _init_names(cycle_class)
    wanted = {
        "keep_alive",
        "response_started",
        "response_complete",
        "scope",
        "disconnected",
        "message_event",
    }
    missing = sorted(wanted - assigned)
    if missing or not callable(getattr(cycle_class, "send", None)):
        return f"uvicorn's RequestResponseCycle has no {', '.join(missing) or 'send'}"
    # A request task runs ``cycle.run_asgi(app)``: its cycle is that coroutine's ``self``.
    if not inspect.iscoroutinefunction(getattr(cycle_class, "run_asgi", None)):
        return "uvicorn's RequestResponseCycle has no coroutine run_asgi"
    return None


def uvicorn_state_of(
    send: object, cycles: Mapping[object, type], server_state_class: type
) -> tuple[Any, str | None]:
    """uvicorn's ``ServerState`` when ``send`` is a supported request cycle's, and why not.

    ``(state, None)`` when the takeover can be used; ``(None, reason)`` when it is
    uvicorn's but unsupported (:func:`uvicorn_unsupported`); ``(None, None)`` when
    ``send`` is not a uvicorn cycle's (another server). ``cycles`` and
    ``server_state_class`` as for :func:`uvicorn_unsupported`.
    """
    cycle = getattr(send, "__self__", None)
    protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
    state = getattr(protocol, "server_state", None)
    if state is None or type(protocol) not in cycles:
        return None, None
    reason = uvicorn_unsupported(type(protocol), cycles, server_state_class)
    if reason is None and type(cycle) is not cycles[type(protocol)]:
        reason = f"the request cycle is {type(cycle)!r}, not uvicorn's"
    return (state, None) if reason is None else (None, reason)


def _cycle_of(task: asyncio.Task[Any]) -> Any:
    """The request cycle an HTTP request task of uvicorn runs (``cycle.run_asgi(app)``), or None.

    Read from the coroutine's frame: a connection's ``cycle`` is not enough,
    with pipelined requests it is the one queued behind the running one.
    """
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    if frame is None or getattr(coro, "__qualname__", "") != "RequestResponseCycle.run_asgi":
        return None
    return frame.f_locals.get("self")


def _wants_event_stream(cycle: Any) -> bool:
    """Whether the request asked for an event stream and nothing else.

    ``Accept: text/event-stream`` is what ``EventSource`` sends. A request that
    lists other types too (MCP clients: ``application/json, text/event-stream``)
    may get any of them: its response is never taken for a stream.
    """
    types = [
        kind.split(b";", 1)[0].strip().lower()
        for name, value in cycle.scope["headers"]
        if name.lower() == b"accept"
        for kind in value.split(b",")
    ]
    types = [kind for kind in types if kind]
    return bool(types) and all(kind == _EVENT_STREAM for kind in types)


def _has_length(cycle: Any) -> bool:
    """Whether the response under way said its ``Content-Length``: it is never cut short."""
    if getattr(cycle, "chunked_encoding", None) is False:  # httptools
        return True
    writer = getattr(getattr(cycle, "conn", None), "_writer", None)  # h11
    return type(writer).__name__ == "ContentLengthWriter"


class UvicornBook:
    """uvicorn's bookkeeping (``server_state``) seen by the takeover.

    ``state.tasks``: one task per running request (``cycle.run_asgi``, the
    request's cycle) and per WebSocket.
    """

    __slots__ = ("ending", "held", "marked", "state")

    def __init__(self, state: Any) -> None:
        self.state = state
        self.marked = False
        self.ending: set[Any] = set()  # the cycles whose event stream is being ended
        self.held: list[asyncio.Task[None]] = []  # adopt()'s holders, the stream enders

    def _busy_cycles(self) -> list[Any]:
        """The cycles of the request tasks running now whose response is not complete."""
        out = []
        for task in list(self.state.tasks):
            cycle = None if task.done() else _cycle_of(task)
            if cycle is not None and not cycle.response_complete:
                out.append(cycle)
        return out

    def mark_close(self) -> int:
        """At the notice: every response not yet complete ends its connection; idempotent.

        A response not started yet gets ``Connection: close`` (uvicorn adds it
        when the request's headers carry it) and its connection closes once it
        is complete. Returns how many requests were marked.
        """
        if self.marked:
            return 0
        self.marked = True
        marked = 0
        for cycle in self._busy_cycles():
            # A response already under way said nothing about closing: its connection
            # stays, and a next request on it takes the full path (503 once intake closed).
            if cycle.response_started:
                continue
            try:  # (called from uvicorn's tick and a request: it must not raise there)
                cycle.keep_alive = False
                headers = cycle.scope["headers"]
                if _CLOSE not in headers:  # a new list: an app may have stored a tuple there
                    cycle.scope["headers"] = [*headers, _CLOSE]
                marked += 1
            except Exception as exc:
                emit("warning", "http.takeover_mark_failed", server="uvicorn", error=repr(exc))
        return marked

    def tick(self, grace: GraceLike) -> None:
        """At each of uvicorn's ticks (0.1 s): mark the requests in flight once the notice came.

        So a notice with no request after it (a ``drain_delay``) still marks them.
        """
        if not self.marked and not grace.ready:
            self.mark_close()

    def hand_over(
        self, tasks: list[asyncio.Task[Any]], tracker: InflightTracker, grace: GraceLike
    ) -> None:
        """In uvicorn's loop, after the notice: ``tasks`` (counted in ``tracker``) leave as they end.

        For ``GraceMiddleware`` used alone (the notice counted them in its own
        thread): responses not started yet end their connections, and an event
        stream among them is ended when intake closes.
        """
        for task in tasks:
            task.add_done_callback(tracker.exit)
        self.mark_close()
        if tasks:
            self.held.append(asyncio.ensure_future(self._end_event_streams_at_intake(grace)))

    async def _end_event_streams_at_intake(self, grace: GraceLike) -> None:
        await grace.wait()
        await self.keep_ending_event_streams()

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The request and WebSocket tasks running now."""
        return [task for task in list(self.state.tasks) if not task.done()]

    async def end_event_streams(self) -> int:
        """When intake closes: end the event streams that began before the notice.

        The response headers were written before the takeover saw them, so an
        event stream is recognised by its request (:func:`_wants_event_stream`)
        and a response that said its length is left alone. Each is ended in a
        task of its own (a client that stopped reading must not hold the
        others): its body is terminated, the app gets ``http.disconnect`` and
        whatever it sends afterwards is dropped. Returns how many it began to end.
        """
        began = 0
        for cycle in self._busy_cycles():
            if (
                cycle in self.ending
                or not cycle.response_started
                or cycle.disconnected
                or not _wants_event_stream(cycle)
                or _has_length(cycle)
            ):
                continue
            self.ending.add(cycle)
            self.held.append(asyncio.ensure_future(_end_stream(cycle)))
            began += 1
        return began

    def start_ending_event_streams(self) -> None:
        """When intake closes: :meth:`keep_ending_event_streams` in a task of its own."""
        self.held.append(asyncio.ensure_future(self.keep_ending_event_streams()))

    async def keep_ending_event_streams(self) -> None:
        """From intake close on: :meth:`end_event_streams` now, and every 0.1 s while a
        request that asked for one has not started its response (a handler still at
        its query when intake closed)."""
        while True:
            await self.end_event_streams()
            waiting = [c for c in self._busy_cycles() if not c.response_started]
            if not any(_wants_event_stream(c) for c in waiting):
                return
            await asyncio.sleep(0.1)


async def _end_stream(cycle: Any) -> None:
    cycle.keep_alive = False
    try:
        await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:  # not ended cleanly: the connection goes, the client sees it end
        with contextlib.suppress(Exception):
            cycle.transport.close()
    cycle.disconnected = True  # the app's later sends are dropped by uvicorn
    cycle.message_event.set()  # a pending receive() returns http.disconnect


# ---------------------------------------------------------------------- aiohttp


def aiohttp_unsupported(
    request_handler_class: type,
    server_class: type,
    application_class: type | None = None,
    request_class: type | None = None,
) -> str | None:
    """Why the aiohttp takeover cannot be used here, or None if it can.

    ``request_handler_class`` / ``server_class`` / ``application_class`` /
    ``request_class``: aiohttp's ``RequestHandler``, ``web.Server``,
    ``web.Application`` and ``web.Request`` (the caller imports aiohttp, this
    module does not). The last two are checked when given: ``run_app`` makes its
    requests with ``Application._make_request(..., _cls=...)`` and a subclass of
    ``Request`` overriding the coroutine ``_prepare_hook``.
    """
    reason = _outside("aiohttp", AIOHTTP_RANGE)
    if reason:
        return reason
    slots = set(getattr(request_handler_class, "__slots__", ()))
    missing = sorted({"_task_handler", "_request_in_progress", "_request_handler"} - slots)
    if missing:
        return f"aiohttp's RequestHandler has no {', '.join(missing)}"
    if not {"request_handler", "request_factory"} <= _init_names(server_class):
        return "aiohttp's Server has no request_handler or request_factory"
    if application_class is not None:
        make = getattr(application_class, "_make_request", None)
        try:
            params = inspect.signature(make).parameters if make is not None else {}
        except (TypeError, ValueError):
            params = {}
        if "_cls" not in params:
            return "aiohttp's Application._make_request takes no _cls"
    if request_class is not None and not inspect.iscoroutinefunction(
        getattr(request_class, "_prepare_hook", None)
    ):
        return "aiohttp's Request has no coroutine _prepare_hook"
    return None


def aiohttp_busy_tasks(connections: Iterable[Any]) -> list[asyncio.Task[Any]]:
    """The tasks of the aiohttp connections that are inside a request now.

    A connection's task serves its requests one after the other; from the
    notice on every response carries ``Connection: close``, so the task ends
    once the current response is out.
    """
    out = []
    for handler in list(connections):
        task = handler._task_handler
        if handler._request_in_progress and task is not None and not task.done():
            out.append(task)
    return out


# ---------------------------------------------------------------------- both


def adopt(grace: GraceLike, tasks: Iterable[asyncio.Task[Any]]) -> list[asyncio.Task[None]]:
    """Hold each task in flight (``grace.inflight()``) until it ends.

    One small holder task per request, made only at the notice. If the drain
    runs out of time it cancels the holders, and each cancels its request.
    """
    return [asyncio.ensure_future(_hold(grace, task)) for task in tasks if not task.done()]


async def _hold(grace: GraceLike, task: asyncio.Task[Any]) -> None:
    async with grace.inflight():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
