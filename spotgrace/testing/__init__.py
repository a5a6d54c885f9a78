"""Fake AWS endpoints on 127.0.0.1 for tests, rehearsals and demos (extra ``testing``).

One aiohttp server on a random loopback port, run in a daemon thread with its
own event loop (so sync code, async code and other processes can all use it),
serving:

- ECS task metadata v4: ``/v4/<id>`` (container) and ``/v4/<id>/task``;
- the ECS agent's task scale-in protection API:
  ``/api/<id>/task-protection/v1/state`` (``GET`` and ``PUT``, with the
  agent's validation rules and its ``protection`` / ``failure`` / ``error``
  answer shapes);
- EC2 IMDSv2: ``PUT /latest/api/token``, ``GET
  /latest/meta-data/spot/instance-action`` and ``GET
  /latest/meta-data/events/recommendations/rebalance``;
- a generic ``GET /notice`` for :class:`spotgrace.watch.UrlSource` (404 until
  the interruption, then ``{"reason": ..., "time": ...}``).

An interruption can be scheduled (:meth:`FakeEndpoints.interrupt`) and faults
programmed per route (:meth:`FakeEndpoints.fail`)::

    with FakeEndpoints() as fake:
        os.environ.update(fake.env())   # ECS_* and AWS_EC2_METADATA_SERVICE_ENDPOINT
        fake.interrupt(after=2.0, warning=120.0)
        fake.fail("spot", "garbage", times=3)

``python -m spotgrace.testing`` runs one in the foreground and prints the
variables to export.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._core._errors import MissingExtraError

try:
    from aiohttp import web
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise MissingExtraError("spotgrace.testing", "testing", exc.name) from exc

from ._routes import FakeState, FaultKind, Route, build_app

__all__ = ["FakeEndpoints", "FaultKind", "RecordedRequest", "Route"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake server answered."""

    method: str
    route: Route
    path: str
    status: int
    at: float  #: ``time.monotonic()`` when it arrived


class FakeEndpoints:
    """A fake ECS task metadata v4 + ECS agent + EC2 IMDSv2 server on 127.0.0.1.

    Use as ``with``/``async with``, or call :meth:`start` and :meth:`close`.
    ``port=0`` picks a free port. Every method is thread-safe.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        task_id: str = "0123456789abcdef0123456789abcdef",
        launch_type: str = "FARGATE",
    ) -> None:
        self._want_port = port
        self._state = FakeState(task_id=task_id, launch_type=launch_type)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeEndpoints:
        """Start serving (idempotent); returns self once the port is bound."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="spotgrace-fake", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise RuntimeError(f"fake endpoints failed to start: {self._error}") from self._error
        return self

    def close(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._stop_event_set)
        thread.join(10.0)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> FakeEndpoints:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def _stop_event_set(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() if it happens before ready
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = build_app(self._state, self._record)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._want_port).start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            self._state.cancel_timers()
            await runner.cleanup()
            # Handlers still sleeping (a "slow" fault) end with the server.
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            # Let the closed transports' connection_lost callbacks run before
            # the loop closes (else: "unclosed transport" ResourceWarnings).
            for _ in range(3):
                await asyncio.sleep(0.01)

    def _record(self, method: str, route: Route, path: str, status: int, at: float) -> None:
        with self._state.lock:
            self._state.log.append(RecordedRequest(method, route, path, status, at))

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    def env(self) -> dict[str, str]:
        """The variables ECS and EC2 would set, pointing at this server."""
        tid = self._state.task_id
        return {
            "ECS_CONTAINER_METADATA_URI_V4": f"{self.url}/v4/{tid}",
            "ECS_AGENT_URI": f"{self.url}/api/{tid}",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url,
            "AWS_EC2_METADATA_DISABLED": "false",
        }

    # ------------------------------------------------------------------ scenario

    def interrupt(
        self,
        *,
        after: float = 0.0,
        action: str = "terminate",
        warning: float = 120.0,
        ecs: bool = True,
        ec2: bool = True,
    ) -> None:
        """Schedule an interruption ``after`` seconds from now.

        At that moment the task metadata turns ``DesiredStatus`` to
        ``STOPPED`` (if ``ecs``) and IMDS starts answering
        ``spot/instance-action`` with ``action`` and a ``time`` ``warning``
        seconds later (if ``ec2``). :attr:`interrupted_at` records the moment.
        """
        self._call(lambda: self._state.schedule(after, self._state.flip, action, warning, ecs, ec2))

    def rebalance(self, *, after: float = 0.0) -> None:
        """Schedule a rebalance recommendation ``after`` seconds from now."""
        self._call(lambda: self._state.schedule(after, self._state.flip_rebalance))

    @property
    def interrupted_at(self) -> float | None:
        """``time.monotonic()`` when the interruption became visible, or None."""
        with self._state.lock:
            return self._state.interrupted_at

    def fail(
        self,
        route: Route | str,
        kind: FaultKind | str,
        *,
        times: int | None = 1,
        status: int = 500,
        delay: float = 5.0,
        size: int = 4 * 1024 * 1024,
        reason: str = "TASK_NOT_VALID",
    ) -> None:
        """Make the next ``times`` requests to ``route`` fail (``None`` = until cleared).

        ``route``: ``task``, ``container``, ``token``, ``spot``, ``rebalance``,
        ``protection``, ``notice`` or ``*``. ``kind``: ``status`` (HTTP ``status`` with a
        JSON error body), ``garbage`` (200 with a body that is not JSON),
        ``wrong`` (200 with valid JSON of the wrong shape), ``slow`` (answer
        after ``delay`` s), ``huge`` (200 with ``size`` bytes), ``reset``
        (close the connection without an answer), ``throttle`` (the agent's
        ``ThrottlingException``), ``failure`` (the agent's HTTP-200
        ``failure`` body with ``reason``).
        """
        self._state.add_fault(route, kind, times, status, delay, size, reason)

    def clear_faults(self) -> None:
        """Remove every programmed fault."""
        with self._state.lock:
            self._state.faults.clear()

    def expire_tokens(self) -> None:
        """Invalidate every IMDSv2 token issued so far (the next use gets 401)."""
        with self._state.lock:
            self._state.tokens.clear()

    def reset(self) -> None:
        """Back to a running task with no notice, no faults and no protection."""
        self._call(self._state.reset)

    # ------------------------------------------------------------------ inspection

    def requests(self, route: Route | str | None = None) -> list[RecordedRequest]:
        """The requests answered so far, oldest first (only ``route`` if given)."""
        with self._state.lock:
            log = list(self._state.log)
        return [r for r in log if route is None or r.route == route]

    def tokens_issued(self) -> list[str]:
        """Every IMDSv2 token handed out so far (to check none is ever logged)."""
        with self._state.lock:
            return list(self._state.issued)

    @property
    def protection(self) -> Mapping[str, Any]:
        """The task's protection as the fake agent holds it (a copy)."""
        with self._state.lock:
            return dict(self._state.protection)

    def _call(self, fn: Any) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("FakeEndpoints is not started")
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5.0)


def main() -> None:
    """``python -m spotgrace.testing [PORT]``: serve until Ctrl-C, print the variables."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with FakeEndpoints(port=port) as fake:
        for key, value in fake.env().items():
            print(f"export {key}={value}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
