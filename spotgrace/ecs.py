"""ECS task scale-in protection around work that must not be cut short (extra ``watch``).

::

    from spotgrace.ecs import protect

    with protect(minutes=30):          # or: async with protect(...), @protect(...)
        run_the_batch()

On enter the task asks the ECS agent (``PUT $ECS_AGENT_URI/task-protection/v1/state``)
to protect it for ``minutes``; while the block runs the protection is renewed
every ``extend_every`` seconds (half of ``minutes`` by default); on exit, even
by an exception, it is turned off. Overlapping blocks that share one
:class:`TaskProtection` are counted: the first enter enables, the last exit
disables.

.. warning:: Task protection stops ECS *service scale-in and deployments*
   from choosing this task. It does **not** protect from a Spot reclaim, a
   host failure, ``StopTask`` or a ``docker stop``: for those, spotgrace's
   graceful shutdown (and checkpoints) are what help.

Outside ECS (``ECS_AGENT_URI`` unset) everything is a logged no-op. When the
agent refuses (``failure`` body with HTTP 200, or an ``error`` body with
4xx/5xx) the refusal is logged and the work runs unprotected, unless
``required=True``, which raises :class:`ProtectionError` on enter instead.
Throttling, 5xx and transport errors are retried with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import json
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._core._errors import MissingExtraError, SpotgraceError, StateError
from ._core._eventlog import emit
from ._core._hosts import check_url

# httpx is imported by the first agent call; a missing one is an error now, not on ECS.
if importlib.util.find_spec("httpx") is None:  # pragma: no cover - depends on the install
    raise MissingExtraError("spotgrace.ecs", "watch", "httpx")

__all__ = ["ProtectionError", "ProtectionState", "TaskProtection", "protect"]

P = ParamSpec("P")
R = TypeVar("R")

_RETRY_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServerException"})


class ProtectionError(SpotgraceError):
    """The ECS agent refused to change the task's protection (with ``required=True``)."""


@dataclass(frozen=True)
class ProtectionState:
    """The task's protection as the agent reports it."""

    enabled: bool
    expiration: str | None = None
    task_arn: str | None = None


class _Retry(Exception):
    pass


class _GaveUp(ProtectionError):
    """No definite answer after every retry: the agent's state is unknown."""


def _parse(status: int, body: bytes) -> ProtectionState:
    """Turn one agent answer into a state, or raise ProtectionError / _Retry."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise _Retry(f"ECS agent: HTTP {status} with an answer that is not a JSON object")
    error, failure, prot = doc.get("error"), doc.get("failure"), doc.get("protection")
    if isinstance(error, dict) or status != 200:
        err = error if isinstance(error, dict) else {}
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        text = f"ECS agent: HTTP {status} {code or 'error'}: {message}".rstrip(": ")
        if status == 429 or status >= 500 or code in _RETRY_CODES:
            raise _Retry(text)
        raise ProtectionError(text)
    if isinstance(failure, dict):
        reason, detail = failure.get("Reason"), failure.get("Detail")
        raise ProtectionError(f"ECS agent: failure {reason}" + (f" ({detail})" if detail else ""))
    if isinstance(prot, dict) and isinstance(prot.get("ProtectionEnabled"), bool):
        expiration, arn = prot.get("ExpirationDate"), prot.get("TaskArn")
        return ProtectionState(
            enabled=prot["ProtectionEnabled"],
            expiration=expiration if isinstance(expiration, str) else None,
            task_arn=arn if isinstance(arn, str) else None,
        )
    raise ProtectionError("ECS agent: unexpected answer shape")


class TaskProtection:
    """Scale-in protection for this ECS task, shared by overlapping blocks.

    ``minutes`` (1-2880) is what each enable/renewal asks for;
    ``extend_every`` (seconds) how often it is renewed while protected.
    ``agent_uri`` defaults to ``$ECS_AGENT_URI``. Thread-safe; the async forms
    run the same calls in a worker thread.
    """

    def __init__(
        self,
        *,
        minutes: int = 120,
        extend_every: float | None = None,
        required: bool = False,
        agent_uri: str | None = None,
        timeout: float = 5.0,
        retries: int = 4,
        allow_hosts: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 2880:
            raise ValueError(f"minutes must be an integer from 1 to 2880, got {minutes!r}")
        every = minutes * 30.0 if extend_every is None else extend_every
        if not 0 < every < minutes * 60:
            raise ValueError(f"extend_every must be > 0 and < minutes * 60 s, got {every!r}")
        env = os.environ if environ is None else environ
        uri = agent_uri if agent_uri is not None else env.get("ECS_AGENT_URI", "")
        self.url: str | None = None
        if uri:
            what = "ECS agent (ECS_AGENT_URI)"
            self.url = check_url(uri, what=what, allow_hosts=allow_hosts)
            self.url += "/task-protection/v1/state"
        self.minutes = minutes
        self.extend_every = every
        self.required = required
        self.timeout = timeout
        self.retries = retries
        self._count = 0
        self._enabled: bool | None = False  # None: unknown (no answer)
        self._lock = threading.Lock()  # the count
        self._io = threading.Lock()  # one agent call at a time, in order
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None
        self._client: Any = None

    # ------------------------------------------------------------------ agent calls

    def _call(self, method: str, body: Mapping[str, object] | None) -> ProtectionState:
        from ._metadata import _fetch

        assert self.url is not None  # callers check
        if self._client is None:
            self._client = _fetch.sync_client(self.timeout)
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        delay = 0.25
        for attempt in range(self.retries + 1):
            try:
                answer = _fetch.fetch_sync(
                    self._client,
                    method,
                    self.url,
                    time_limit=self.timeout,
                    headers=headers,
                    content=content,
                )
                return _parse(answer.status, answer.body)
            except (_Retry, _fetch.FetchError) as exc:
                if attempt == self.retries:
                    raise _GaveUp(f"{exc} (gave up after {attempt + 1} attempts)") from None
                emit("info", "protection.retry", attempt=attempt + 1, error=str(exc))
                time.sleep(delay * (1 + random.random()))
                delay *= 2
        raise AssertionError("unreachable")

    def state(self) -> ProtectionState | None:
        """The agent's view of the protection (None outside ECS)."""
        if self.url is None:
            return None
        with self._io:
            return self._call("GET", None)

    def _set(self, enabled: bool, event: str) -> None:
        """Bring the agent in line with ``enabled``; errors logged (raised if required)."""
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.minutes
        try:
            state = self._call("PUT", body)
        except ProtectionError as exc:
            if isinstance(exc, _GaveUp):
                self._enabled = None  # unknown: the last exit will turn it off again
            emit("warning", "protection.failed", action=event, error=str(exc))
            if enabled and self.required and event == "protection.enabled":
                raise
            return
        self._enabled = enabled
        emit("info", event, expiration=state.expiration, minutes=self.minutes if enabled else None)

    def _sync_to_count(self, event: str) -> None:
        with self._io:
            with self._lock:
                want = self._count > 0
            if want != self._enabled or event == "protection.extended":
                self._set(want, event if want else "protection.disabled")

    # ------------------------------------------------------------------ renewal

    def _renew_forever(self) -> None:
        while not self._stop_renewing.wait(self.extend_every):
            with self._lock:
                if self._count == 0:
                    return
            self._sync_to_count("protection.extended")

    # ------------------------------------------------------------------ entering

    def enter(self) -> None:
        """Count one more protected block; the first enables protection."""
        with self._lock:
            self._count += 1
            first = self._count == 1
        if self.url is None:
            if first:
                emit("info", "protection.skipped", reason="ECS_AGENT_URI is not set")
            return
        try:
            self._sync_to_count("protection.enabled")
        except ProtectionError:
            with self._lock:
                self._count -= 1
            raise
        with self._lock:
            if self._renewer is None and self._count > 0:
                self._stop_renewing.clear()
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="spotgrace-protect", daemon=True
                )
                self._renewer.start()

    def exit(self) -> None:
        """Count one block fewer; the last disables protection. Never raises."""
        with self._lock:
            if self._count == 0:
                raise StateError("TaskProtection.exit() without enter()")
            self._count -= 1
            last = self._count == 0
            renewer = self._renewer if last else None
            if last:
                self._renewer = None
                self._stop_renewing.set()
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(self.timeout * (self.retries + 1) + 5)
        if self.url is not None and last:
            self._sync_to_count("protection.disabled")
            with self._io:
                client, self._client = self._client, None
            if client is not None:
                client.close()

    def protect(self) -> protect:
        """A ``with``/``async with``/decorator block counted on this object."""
        return protect(_shared=self)


class protect:  # lower case: used like a function, `with protect(...)`
    """Protect the task from scale-in while a block or a function runs.

    ``with protect(minutes=30): ...``, ``async with protect(): ...``,
    ``@protect()`` on a sync or async function. Arguments as
    :class:`TaskProtection`; each ``protect(...)`` has its own counter unless
    made by :meth:`TaskProtection.protect`.
    """

    def __init__(
        self,
        *,
        minutes: int = 120,
        extend_every: float | None = None,
        required: bool = False,
        agent_uri: str | None = None,
        timeout: float = 5.0,
        retries: int = 4,
        allow_hosts: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
        _shared: TaskProtection | None = None,
    ) -> None:
        self._protection = _shared or TaskProtection(
            minutes=minutes,
            extend_every=extend_every,
            required=required,
            agent_uri=agent_uri,
            timeout=timeout,
            retries=retries,
            allow_hosts=allow_hosts,
            environ=environ,
        )

    def __enter__(self) -> TaskProtection:
        self._protection.enter()
        return self._protection

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._protection.exit()

    async def __aenter__(self) -> TaskProtection:
        await asyncio.to_thread(self._protection.enter)
        return self._protection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(asyncio.to_thread(self._protection.exit))

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` so that every call runs protected."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(Callable[P, Any], wrapper)
