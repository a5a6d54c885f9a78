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
- a request is in flight (``grace.inflight()``) from the call until its
  response body is closed, so the drain waits for it.

It imports no server and no framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

from .._core._inflight import InflightScope
from ._prefork import current
from ._shared import UNAVAILABLE_BODY, HttpOptions, Readiness, readiness

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
        # Where the hot path reads readiness (a spotgrace Grace: its coordinator's attribute).
        self._flags: Readiness | None = None if grace is None else readiness(cast(Any, grace))
        # spotgrace's in-flight scope holds no per-use state: one serves every request.
        scope = None if grace is None else grace.inflight()
        self._scope: AbstractContextManager[Any] | None = (
            scope if type(scope) is InflightScope else None
        )
        self.spotgrace_wrapped = True  # spotgrace.gunicorn does not wrap it again
        self.options = HttpOptions(readyz=readyz, healthz=healthz, retry_after=retry_after)

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
        grace, flags = self.grace, self._flags
        scope = self._scope
        if grace is None or flags is None:
            grace = flags = self._grace()
        options = self.options
        path = environ.get("PATH_INFO", "")
        if path == options.readyz:
            ready = grace.ready
            body = b"ok\n" if ready else b"draining\n"
            return _plain(environ, start_response, 200 if ready else 503, body, ready)
        if path == options.healthz:
            return _plain(environ, start_response, 200, b"ok\n", grace.ready)
        # Intake stops only after the notice (readiness red first): while ready, the
        # stopping flag need not be read.
        if not flags.ready and grace.stopping:
            retry = [("Retry-After", str(options.retry_after))]
            return _plain(environ, start_response, 503, UNAVAILABLE_BODY, False, retry)
        if scope is None:
            scope = grace.inflight()
        scope.__enter__()
        try:
            if not flags.ready:
                start_response = _closing(environ, start_response)
            result = self.app(environ, start_response)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(result, wrapper):
            return _hold_file(result, scope)  # the server may still sendfile() it
        return _Body(result, scope)


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
    if "WSGIServer" in environ.get("SERVER_SOFTWARE", ""):  # wsgiref forbids hop-by-hop headers
        return start_response

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return wrapped


def _hold_file(result: Any, scope: AbstractContextManager[Any]) -> Iterable[bytes]:
    """Keep the server's own ``wsgi.file_wrapper`` (gunicorn sends it with ``sendfile()``
    only as that type) and end the in-flight scope when the server closes it."""
    inner = getattr(result, "close", None)
    held: list[AbstractContextManager[Any]] = [scope]

    def close() -> None:
        try:
            if inner is not None:
                inner()
        finally:
            if held:
                held.pop().__exit__(None, None, None)

    try:
        result.close = close
    except (AttributeError, TypeError):  # a wrapper that takes no attribute: iterate it
        return _Body(result, scope)
    return result  # type: ignore[no-any-return]


class _Body:
    """The app's response body; the request stays in flight until it is closed."""

    __slots__ = ("_body", "_scope")

    def __init__(self, body: Iterable[bytes], scope: AbstractContextManager[Any]) -> None:
        self._body = body
        self._scope: AbstractContextManager[Any] | None = scope

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            scope, self._scope = self._scope, None
            if scope is not None:
                scope.__exit__(None, None, None)

    def __del__(self) -> None:  # a server that never calls close(): do not leak the count
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.__exit__(None, None, None)
