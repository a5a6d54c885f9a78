"""The state and the aiohttp routes behind :class:`spotgrace.testing.FakeEndpoints`."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from aiohttp import web

__all__ = ["FakeState", "FaultKind", "Route", "build_app", "iso"]

Route = Literal["task", "container", "token", "spot", "rebalance", "protection", "notice", "*"]
FaultKind = Literal["status", "garbage", "wrong", "slow", "huge", "reset", "throttle", "failure"]
Recorder = Callable[[str, Route, str, int, float], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_TOKEN_TTL = 21600
JSON = "application/json"


def iso(when: datetime) -> str:
    """``2026-01-01T00:02:00Z``: the format IMDS and the ECS agent use."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    route: str
    kind: str
    times: int | None
    status: int
    delay: float
    size: int
    reason: str


@dataclass
class FakeState:
    """Everything the fake endpoints answer from; guarded by ``lock``."""

    task_id: str
    launch_type: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    known_status: str = "RUNNING"
    desired_status: str = "RUNNING"
    spot_action: dict[str, str] | None = None
    rebalance: dict[str, str] | None = None
    notice: dict[str, str] | None = None
    interrupted_at: float | None = None
    tokens: dict[str, float] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    protection: dict[str, Any] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    log: list[Any] = field(default_factory=list)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def task_arn(self) -> str:
        return f"arn:aws:ecs:us-east-1:123456789012:task/spotgrace-fake/{self.task_id}"

    # -- scenario (called on the server's loop) --------------------------------

    def schedule(self, after: float, fn: Callable[..., None], *args: Any) -> None:
        if after <= 0:
            fn(*args)
            return
        loop = asyncio.get_running_loop()
        self.timers.append(loop.call_later(after, fn, *args))

    def flip(self, action: str, warning: float, ecs: bool, ec2: bool) -> None:
        now = datetime.now(UTC)
        with self.lock:
            if ecs:
                self.desired_status = "STOPPED"
            when = iso(now + timedelta(seconds=warning))
            if ec2:
                self.spot_action = {"action": action, "time": when}
            self.notice = {"reason": f"fake interruption ({action})", "time": when}
            self.interrupted_at = time.monotonic()

    def flip_rebalance(self) -> None:
        with self.lock:
            self.rebalance = {"noticeTime": iso(datetime.now(UTC))}

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def reset(self) -> None:
        self.cancel_timers()
        with self.lock:
            self.known_status = self.desired_status = "RUNNING"
            self.spot_action = self.rebalance = self.notice = None
            self.interrupted_at = None
            self.tokens.clear()
            self.protection.clear()
            self.faults.clear()
            self.log.clear()

    def add_fault(
        self,
        route: str,
        kind: str,
        times: int | None,
        status: int,
        delay: float,
        size: int,
        reason: str,
    ) -> None:
        if route not in get_args(Route):
            raise ValueError(f"unknown route {route!r}; one of {get_args(Route)}")
        if kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault {kind!r}; one of {get_args(FaultKind)}")
        with self.lock:
            self.faults.append(Fault(route, kind, times, status, delay, size, reason))

    def take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route in (route, "*"):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # -- documents ------------------------------------------------------------

    def container_doc(self) -> dict[str, Any]:
        with self.lock:
            return {
                "DockerId": self.task_id + "-app",
                "Name": "app",
                "DockerName": "ecs-spotgrace-fake-app",
                "Image": "spotgrace/example:latest",
                "Labels": {"com.amazonaws.ecs.task-arn": self.task_arn},
                "DesiredStatus": self.desired_status,
                "KnownStatus": self.known_status,
                "Type": "NORMAL",
            }

    def task_doc(self) -> dict[str, Any]:
        container = self.container_doc()
        with self.lock:
            return {
                "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/spotgrace-fake",
                "TaskARN": self.task_arn,
                "Family": "spotgrace-fake",
                "Revision": "1",
                "DesiredStatus": self.desired_status,
                "KnownStatus": self.known_status,
                "LaunchType": self.launch_type,
                "AvailabilityZone": "us-east-1a",
                "Containers": [container],
            }


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"Code": code, "Message": message}}, status=status)


async def _apply_fault(fault: Fault, request: web.Request, state: FakeState) -> web.Response | None:
    """The faulty answer, or None to answer normally (after a ``slow`` delay)."""
    kind = fault.kind
    if kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if kind == "status":
        code = "ServerException" if fault.status >= 500 else "ClientException"
        return _error(fault.status, code, "injected fault")
    if kind == "garbage":
        return web.Response(body=b"<html>not json{{", content_type=JSON)
    if kind == "wrong":
        return web.json_response(["not", "the", "expected", "shape"])
    if kind == "huge":
        body = b'{"padding": "' + b"x" * fault.size + b'"}'
        return web.Response(body=body, content_type=JSON)
    if kind == "throttle":
        return _error(400, "ThrottlingException", "Rate exceeded")
    if kind == "failure":
        doc = {"failure": {"Arn": state.task_arn, "Reason": fault.reason, "Detail": None}}
        return web.json_response(doc)
    # reset: drop the connection without an answer
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


def _wrap(state: FakeState, record: Recorder, route: Route, handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        status = 0
        try:
            fault = state.take_fault(route)
            response: web.StreamResponse | None = None
            if fault is not None:
                response = await _apply_fault(fault, request, state)
            if response is None:
                response = await handler(request)
            status = response.status
            return response
        finally:
            record(request.method, route, request.path, status, at)

    return wrapped


def build_app(state: FakeState, record: Recorder) -> web.Application:
    """The aiohttp application with every fake route."""

    def token_ok(request: web.Request) -> bool:
        token = request.headers.get("X-aws-ec2-metadata-token", "")
        with state.lock:
            expiry = state.tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    async def container(request: web.Request) -> web.StreamResponse:
        return web.json_response(state.container_doc())

    async def task(request: web.Request) -> web.StreamResponse:
        return web.json_response(state.task_doc())

    async def token(request: web.Request) -> web.StreamResponse:
        if "X-Forwarded-For" in request.headers:
            return web.Response(status=403, text="Forbidden")
        raw = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOKEN_TTL:
            return web.Response(status=400, text="Bad Request")
        value = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens[value] = time.monotonic() + int(raw)
            state.issued.append(value)
        return web.Response(text=value, headers={"X-aws-ec2-metadata-token-ttl-seconds": raw})

    def metadata(attr: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if not token_ok(request):
                return web.Response(status=401, text="Unauthorized")
            with state.lock:
                doc = getattr(state, attr)
            if doc is None:
                return web.Response(status=404, text="Not Found")
            return web.Response(text=json.dumps(doc), content_type="text/plain")

        return handler

    async def notice(request: web.Request) -> web.StreamResponse:
        with state.lock:
            doc = state.notice
        return web.Response(status=404) if doc is None else web.json_response(doc)

    async def get_protection(request: web.Request) -> web.StreamResponse:
        with state.lock:
            prot = {
                "ExpirationDate": state.protection.get("ExpirationDate"),
                "ProtectionEnabled": bool(state.protection.get("ProtectionEnabled", False)),
                "TaskArn": state.task_arn,
            }
        return web.json_response({"protection": prot})

    async def put_protection(request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "InvalidParameterException", "Invalid request: bad JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("ProtectionEnabled"), bool):
            return _error(
                400,
                "InvalidParameterException",
                "Invalid request: does not contain 'ProtectionEnabled' field",
            )
        minutes = body.get("ExpiresInMinutes", 120)
        if body["ProtectionEnabled"] and (
            isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 2880
        ):
            return _error(
                400,
                "InvalidParameterException",
                "expiresInMinutes must be between 1 and 2880",
            )
        with state.lock:
            if body["ProtectionEnabled"]:
                expiry = iso(datetime.now(UTC) + timedelta(minutes=minutes))
                state.protection = {"ProtectionEnabled": True, "ExpirationDate": expiry}
            else:
                state.protection = {"ProtectionEnabled": False, "ExpirationDate": None}
        return await get_protection(request)

    app = web.Application()

    def add(method: str, path: str, route: Route, handler: Handler) -> None:
        app.router.add_route(method, path, _wrap(state, record, route, handler))

    add("GET", "/v4/{id}", "container", container)
    add("GET", "/v4/{id}/task", "task", task)
    add("PUT", "/latest/api/token", "token", token)
    add("GET", "/latest/meta-data/spot/instance-action", "spot", metadata("spot_action"))
    add(
        "GET",
        "/latest/meta-data/events/recommendations/rebalance",
        "rebalance",
        metadata("rebalance"),
    )
    add("GET", "/notice", "notice", notice)
    add("GET", "/api/{id}/task-protection/v1/state", "protection", get_protection)
    add("PUT", "/api/{id}/task-protection/v1/state", "protection", put_protection)
    return app
