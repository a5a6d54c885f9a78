"""The WSGI middleware's response bodies and the book of requests served before the notice.

A WSGI request is in flight from the call until the server closes its response
body, so the middleware hands the server a body of its own whose ``close()``
(or, for a server that never calls it, its finalizer) ends the request, exactly
once. Each body is made without an ``__init__`` (a Python frame less per
request): the middleware sets its slots.

Before the notice, under a spotgrace ``Grace``, a request is not counted in the
tracker: it is listed in a :class:`LeanBook` (a ticket number in a dict), and
the notice, in the thread that takes it, counts every request still listed
(:meth:`LeanBook.at_notice`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._core._inflight import InflightTracker

__all__ = ["Body", "LeanBody", "LeanBook", "hold_file", "wrap_body"]


class Body:
    """The app's body; ``_leave()`` is called once, when it is closed (or freed unclosed)."""

    __slots__ = ("_body", "_leave")

    _body: Iterable[bytes]
    _leave: Callable[[], object] | None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            leave, self._leave = self._leave, None
            if leave is not None:
                leave()

    def __del__(self) -> None:  # a server that never calls close(): do not leak the count
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()


def wrap_body(result: Iterable[bytes], leave: Callable[[], object]) -> Body:
    """A :class:`Body` around ``result`` that calls ``leave()`` once."""
    made = Body()
    made._body = result
    made._leave = leave
    return made


class LeanBook:
    """Requests served before the notice: listed by ticket, counted in flight only at the notice.

    It is also the notice gate (``Coordinator.on_notice``): ``open`` turns False
    the moment readiness turns red. A request takes a ticket, lists it in
    ``live``, then reads ``open`` again: if still open, the notice (which
    closes the gate before it reads ``live``) will find it. Each request
    counted at the notice leaves the tracker exactly once: the request removes
    its ticket from ``live`` before it reads ``held``; the notice adds the
    ticket to ``held`` before it reads ``live``; whichever sees the other's
    mark pops the ticket from ``held`` (atomic), and only the one that gets it
    calls ``tracker.exit``.
    """

    __slots__ = ("held", "live", "open", "tickets", "tracker")

    def __init__(self, *, lean: bool) -> None:
        self.open = lean
        self.live: dict[int, None] = {}
        self.held: dict[int, bool] = {}
        self.tickets = itertools.count()
        self.tracker: InflightTracker | None = None

    def at_notice(self, tracker: InflightTracker) -> None:
        """At the notice, in the thread that takes it (under the coordinator's lock)."""
        self.tracker = tracker  # before any ticket is held: a leaving request finds it
        self.open = False  # before live is read: a request listed after it takes the full path
        live, held = self.live, self.held
        for ticket in list(live):
            tracker.enter(None)
            held[ticket] = True
            if ticket not in live:  # it ended meanwhile, before it could see held
                self.release(ticket)

    def leave(self, ticket: int) -> None:
        """The request of ``ticket`` ends (its body closed or freed, or the app raised)."""
        del self.live[ticket]
        if self.held:
            self.release(ticket)

    def release(self, ticket: int) -> None:
        """Leave the tracker for ``ticket`` if the notice counted it and nobody left for it yet."""
        if self.held.pop(ticket, False) and self.tracker is not None:
            self.tracker.exit(None)


class LeanBody:
    """A :class:`Body` for a request of a :class:`LeanBook`: closing it ends the ticket."""

    __slots__ = ("_body", "_book", "_ticket")

    _body: Iterable[bytes]
    _book: LeanBook
    _ticket: int | None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            ticket, self._ticket = self._ticket, None
            if ticket is not None:
                book = self._book
                del book.live[ticket]  # LeanBook.leave, inline: a frame less per request
                if book.held:
                    book.release(ticket)

    def end(self) -> None:
        """End the ticket without closing the body (a file wrapper closes itself)."""
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self._book.leave(ticket)

    def __del__(self) -> None:  # a server that never calls close(): do not leak the ticket
        self.end()


def hold_file(result: Any, leave: Callable[[], object]) -> Iterable[bytes]:
    """Keep the server's own ``wsgi.file_wrapper`` (gunicorn sends it with ``sendfile()``
    only as that type) and call ``leave()`` once when the server closes it."""
    inner = getattr(result, "close", None)
    held: list[Callable[[], object]] = [leave]

    def close() -> None:
        try:
            if inner is not None:
                inner()
        finally:
            if held:
                held.pop()()

    try:
        result.close = close
    except (AttributeError, TypeError):  # a wrapper that takes no attribute: iterate it
        return wrap_body(result, leave)
    return result  # type: ignore[no-any-return]
