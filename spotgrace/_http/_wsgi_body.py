"""The WSGI middleware's response bodies and the book of requests served before the notice.

A WSGI request is in flight from the call until the server closes its response
body, so the middleware hands the server a body of its own whose ``close()``
(or, for a server that never calls it, its finalizer) ends the request, exactly
once. Each body is made without an ``__init__`` (a Python frame less per
request): the middleware sets its slots. Once it has ended, a body changes its
type to one with no finalizer (``__del__`` makes freeing an object cost about as
much as the rest of its life).

Before the notice, under a spotgrace ``Grace``, a request is not counted in the
tracker: it is listed in a :class:`LeanBook` (a ticket number in a dict), and
the notice, in the thread that takes it, counts every request still listed
(:meth:`LeanBook.at_notice`).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._core._inflight import InflightTracker

__all__ = ["Body", "Ended", "LeanBody", "LeanBook", "LeanEnded", "hold_file", "wrap_body"]


class Ended:
    """A :class:`Body` once it has ended: no finalizer, so freeing it costs nothing more.

    A type with ``__del__`` costs about as much again to free as the rest of the
    body's life, so a closed body becomes this type (same slots).
    """

    __slots__ = ("_body", "_leave")

    _body: Iterable[bytes]
    _leave: Callable[[], object]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        """Closed already: nothing to do."""


class Body(Ended):
    """The app's body; ``_leave()`` is called once, when it is closed (or freed unclosed)."""

    __slots__ = ()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            # First: whatever happens next, it ends only once.
            self.__class__ = Ended  # type: ignore[assignment]
            self._leave()

    def __del__(self) -> None:  # a server that never calls close(): do not leak the count
        self.__class__ = Ended  # type: ignore[assignment]
        self._leave()


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


class LeanEnded:
    """A :class:`LeanBody` once it has ended (no finalizer: see :class:`Ended`)."""

    __slots__ = ("_body", "_book", "_ticket")

    _body: Iterable[bytes]
    _book: LeanBook
    _ticket: int

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        """Closed already: nothing to do."""

    def end(self) -> None:
        """Ended already: nothing to do."""


class LeanBody(LeanEnded):
    """A body for a request of a :class:`LeanBook`: closing it (or freeing it) ends the ticket."""

    __slots__ = ()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            # First: whatever happens next, it ends only once.
            self.__class__ = LeanEnded  # type: ignore[assignment]
            book, ticket = self._book, self._ticket
            del book.live[ticket]  # LeanBook.leave, inline: a frame less per request
            if book.held:
                book.release(ticket)

    def end(self) -> None:
        """End the ticket without closing the body (a file wrapper closes itself)."""
        self.__class__ = LeanEnded  # type: ignore[assignment]
        self._book.leave(self._ticket)

    __del__ = end  # a server that never calls close(): do not leak the ticket


def hold_file(result: Any, leave: Callable[[], object]) -> Iterable[bytes]:
    """Keep the server's own ``wsgi.file_wrapper`` (gunicorn sends it with ``sendfile()``
    only as that type) and call ``leave()`` once: when the server closes it, or when it
    is freed unclosed (the closure set on it holds no reference back to it: no cycle
    keeps it, and the count, until a garbage collection)."""
    leaving = _Leaving(leave)
    own = vars(result).get("close") if hasattr(result, "__dict__") else None
    inner = getattr(type(result), "close", None)
    try:
        target: Callable[[], Any] = weakref.ref(result)
    except TypeError:  # not weakly referable: a cycle, freed by a collection
        target = lambda: result  # noqa: E731

    def close() -> None:
        try:
            if own is not None:
                own()
            elif inner is not None and (held := target()) is not None:
                inner(held)
        finally:
            leaving.leave()

    try:
        result.close = close
    except (AttributeError, TypeError):  # a wrapper that takes no attribute: iterate it
        return wrap_body(result, leave)
    return result  # type: ignore[no-any-return]


class _Leaving:
    """``leave()`` called once: by the wrapper's close, or when the wrapper is freed."""

    __slots__ = ("_leave",)

    def __init__(self, leave: Callable[[], object]) -> None:
        self._leave: Callable[[], object] | None = leave

    def leave(self) -> None:
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()

    def __del__(self) -> None:
        self.leave()
