"""The WSGI middleware (public as ``spotgrace.wsgi``; ``spotgrace.gunicorn`` wraps apps with it).

A pure middleware with the contract of the ASGI one.

``GraceMiddleware(app)`` under gunicorn with ``spotgrace.gunicorn`` in its
config (every worker reads the master's shared state), or
``GraceMiddleware(app, grace=grace)`` with the ``spotgrace.Grace`` of a
``with spotgrace.graceful() as grace`` block in a single process:

- ``/readyz`` answers 200 while serving and 503 from the moment the notice
  arrives; ``/healthz`` answers 200 until exit (both configurable, ``None``
  turns one off);
- from the notice on, every response ends its connection (``Connection:
  close``): under gunicorn through its response's ``force_close()``, since
  gunicorn drops hop-by-hop headers set by an app; elsewhere with the header
  (except under ``wsgiref``, which forbids it);
- once intake is closed (``grace.stopping``), new requests are answered 503
  with ``Retry-After``, never reset;
- a request is in flight from the call until its response body is closed,
  so the drain waits for it: before the notice it is only listed (a
  :class:`~._wsgi_body.LeanBook`) or, in a gunicorn worker, counted by C
  counters; the notice counts the listed ones still open in the tracker.

It imports no server and no framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Protocol, cast

from .._core._inflight import InflightScope
from ._prefork import WorkerGrace, current
from ._prefork import _grace as _worker_grace  # current()'s own list: no call per request
from ._shared import UNAVAILABLE_BODY, HttpOptions, Readiness, readiness
from ._wsgi_body import Body, LeanBody, LeanBook, hold_file

__all__ = ["GraceMiddleware", "SyncGraceLike"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class SyncGraceLike(Protocol):
    """The part of ``spotgrace.Grace`` the WSGI middleware uses.

    ``stopping`` turns True only after ``ready`` turned False (intake stops after
    the notice): the middleware reads ``stopping`` only once ``ready`` is False.
    """

    @property
    def ready(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    def inflight(self) -> AbstractContextManager[Any]: ...


class GraceMiddleware:
    """Pure WSGI middleware: probes, ``Connection: close``, 503 after intake, in-flight tracking.

    ``grace``: the ``spotgrace.Grace`` of the running process; ``None`` (the
    default) means the state a pre-fork master shares with its workers
    (``spotgrace.gunicorn`` in gunicorn's config), looked up on each request,
    so the app may be created before the workers fork.

    Before the notice a request takes a lean path: under a spotgrace ``Grace``
    it is listed in a :class:`LeanBook` and counted in flight only if it is
    still running at the notice (the coordinator calls the book in the thread
    that takes the notice, before readiness turns red); under a gunicorn
    worker's shared state it is counted by two C counters. From the notice
    on, every request takes the full path (:meth:`_serve`).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        grace: SyncGraceLike | None = None,
        readyz: str | None = "/readyz",
        healthz: str | None = "/healthz",
        retry_after: int = 5,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, got {app!r}")
        self.app = app
        self.grace = grace
        # Where the full path reads readiness (a spotgrace Grace: its coordinator's attribute).
        self._flags: Readiness | None = None if grace is None else readiness(cast(Any, grace))
        # spotgrace's in-flight scope holds no per-use state: one serves every request.
        scope = None if grace is None else grace.inflight()
        self._scope: AbstractContextManager[Any] | None = (
            scope if type(scope) is InflightScope else None
        )
        self.spotgrace_wrapped = True  # spotgrace.gunicorn does not wrap it again
        self.options = HttpOptions(readyz=readyz, healthz=healthz, retry_after=retry_after)
        self._probes = frozenset(p for p in (self.options.readyz, self.options.healthz) if p)
        # The lean path of a spotgrace Grace: its coordinator tells the book at the
        # notice. Not with interrupt=True: there the main thread's interrupt is held
        # back only inside an in-flight scope, so every request takes the full path.
        register = getattr(grace, "_on_notice", None)
        interrupt = getattr(getattr(grace, "options", None), "interrupt", True)
        self._book = LeanBook(lean=register is not None and interrupt is False)
        if self._book.open and register is not None:
            register(self._book.at_notice, self._book)

    def _grace(self) -> SyncGraceLike:
        grace = self.grace if self.grace is not None else current()
        if grace is None:
            raise RuntimeError(
                "spotgrace.wsgi.GraceMiddleware has no grace: pass grace= (from "
                "`with spotgrace.graceful() as grace`) or run under gunicorn with "
                "spotgrace.gunicorn in its config (-c python:spotgrace.gunicorn)"
            )
        return grace

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        book = self._book
        if book.open:  # a spotgrace Grace, before the notice: list the request, count nothing
            if environ.get("PATH_INFO") in self._probes:
                return self._serve(environ, start_response)
            ticket = next(book.tickets)
            book.live[ticket] = None
            if not book.open:  # closed meanwhile: the notice may have counted it
                return self._serve(environ, start_response, book, ticket)  # type: ignore[unreachable]
            try:
                result = self.app(environ, start_response)
            except BaseException:
                book.leave(ticket)
                raise
            made = LeanBody()
            made._body, made._book, made._ticket = result, book, ticket
            if type(result) is not list:  # (inline: a frame less per request)
                wrapper = environ.get("wsgi.file_wrapper")
                if isinstance(wrapper, type) and isinstance(result, wrapper):
                    made._body = ()  # no cycle through the wrapper's close: freed at once
                    return hold_file(result, made.end)  # the server may still sendfile() it
            return made
        grace = self.grace
        if grace is None:
            grace = _worker_grace[0] if _worker_grace else current()
        if type(grace) is WorkerGrace and not grace.flags[0]:
            # A gunicorn worker before the master's notice: two C counters, no lock.
            if environ.get("PATH_INFO") in self._probes:
                return self._serve(environ, start_response)
            counter = grace.counter
            next(counter.started)
            try:
                result = self.app(environ, start_response)
            except BaseException:
                next(counter.ended)
                raise
            if type(result) is not list:
                wrapper = environ.get("wsgi.file_wrapper")
                if isinstance(wrapper, type) and isinstance(result, wrapper):
                    return hold_file(result, counter.ended.__next__)
            counted = Body()
            counted._body, counted._leave = result, counter.ended.__next__
            return counted
        return self._serve(environ, start_response)

    def _serve(
        self,
        environ: Environ,
        start_response: StartResponse,
        book: LeanBook | None = None,
        ticket: int | None = None,
    ) -> Iterable[bytes]:
        """The full path: probes, the 503 once intake is closed, the request in a scope.

        ``ticket``: a lean request that found the gate closed; it leaves its
        book once it is counted here (or answered 503), so the count never dips.
        """
        grace, flags = self.grace, self._flags
        scope = self._scope
        if grace is None or flags is None:
            grace = flags = self._grace()
        options = self.options
        path = environ.get("PATH_INFO", "")
        if path == options.readyz:
            ready = grace.ready
            body_ = b"ok\n" if ready else b"draining\n"
            return _plain(environ, start_response, 200 if ready else 503, body_, ready)
        if path == options.healthz:
            return _plain(environ, start_response, 200, b"ok\n", grace.ready)
        # Intake stops only after the notice (readiness red first): while ready, the
        # stopping flag need not be read.
        if not flags.ready and grace.stopping:
            if book is not None and ticket is not None:
                book.leave(ticket)
            retry = [("Retry-After", str(options.retry_after))]
            return _plain(environ, start_response, 503, UNAVAILABLE_BODY, False, retry)
        if scope is None:
            scope = grace.inflight()
        scope.__enter__()
        if book is not None and ticket is not None:
            book.leave(ticket)
        try:
            if not flags.ready:
                start_response = _closing(environ, start_response)
            result = self.app(environ, start_response)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        leave = partial(scope.__exit__, None, None, None)
        if _is_file(environ, result):
            return hold_file(result, leave)  # the server may still sendfile() it
        made = Body()
        made._body, made._leave = result, leave
        return made


def _is_file(environ: Environ, result: object) -> bool:
    """Whether ``result`` is the server's own ``wsgi.file_wrapper``."""
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(result, wrapper)


_STATUS = {200: "200 OK", 503: "503 Service Unavailable"}


def _plain(
    environ: Environ,
    start_response: StartResponse,
    status: int,
    body: bytes,
    ready: bool,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *(extra or []),
    ]
    if not ready:
        start_response = _closing(environ, start_response)
    start_response(_STATUS[status], headers)
    return [body]


def _closing(environ: Environ, start_response: StartResponse) -> StartResponse:
    """``start_response`` that makes this response end its connection."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):  # gunicorn: its Response drops an app's Connection header
        force_close()
        return start_response
    task = _waitress_task(start_response)
    if task is not None:  # waitress: it refuses hop-by-hop headers from an app (a 500)
        task.set_close_on_finish()  # adds Connection: close itself, closes after the response
        return start_response
    if "WSGIServer" in environ.get("SERVER_SOFTWARE", ""):  # wsgiref forbids hop-by-hop headers
        return start_response
    if "waitress.client_disconnected" in environ:
        # waitress, its start_response wrapped by another middleware (its task out of
        # reach): the header would be refused (a 500); the connection stays open.
        return start_response

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return wrapped


def _waitress_task(start_response: StartResponse) -> Any:
    """waitress's task for this response: its ``start_response`` is a closure over it."""
    for cell in getattr(start_response, "__closure__", None) or ():
        try:
            task = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if type(task).__module__.startswith("waitress.") and callable(
            getattr(task, "set_close_on_finish", None)
        ):
            return task
    return None
