"""The early-warning sources: ECS task metadata, EC2 IMDSv2, any URL."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._core._errors import ConfigError
from .._core._hosts import check_url
from .._metadata._strict import (
    SourceError,
    SourceUnavailable,
    expect,
    parse_object,
    string_field,
    timestamp,
)
from ._notice import Fetch, Source, WatchNotice
from ._watcher import log_event

__all__ = [
    "Ec2Source",
    "EcsSource",
    "UrlSource",
    "sources_from_spec",
]

IMDS_IPV4 = "http://169.254.169.254"
IMDS_IPV6 = "http://[fd00:ec2::254]"
SPOT_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
SPOT_ACTIONS = frozenset({"terminate", "stop", "hibernate"})


# ------------------------------------------------------------------ sources


class EcsSource:
    """ECS task metadata v4: a stop is under way when ``DesiredStatus`` is ``STOPPED``.

    ``uri`` defaults to ``$ECS_CONTAINER_METADATA_URI_V4``. The notice carries
    no time: the deadline stays ``stop_timeout`` after it.
    """

    name = "ecs"

    def __init__(
        self,
        uri: str | None = None,
        *,
        allow_hosts: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        uri = uri if uri is not None else env.get("ECS_CONTAINER_METADATA_URI_V4", "")
        what = "ECS task metadata (ECS_CONTAINER_METADATA_URI_V4)"
        if not uri:
            raise ConfigError(f"{what} is not set: not on ECS? watch='auto' watches what exists")
        self.url = check_url(uri, what=what, allow_hosts=allow_hosts) + "/task"

    async def poll(self, fetch: Fetch) -> Sequence[WatchNotice]:
        """One look at the task metadata."""
        answer = await fetch("GET", self.url)
        expect(answer, self.url, (200,))
        doc = parse_object(answer, self.url)
        desired = string_field(doc, "DesiredStatus", self.url)
        known = string_field(doc, "KnownStatus", self.url)
        if desired != "STOPPED" or known == "STOPPED":
            return ()
        reason = f"ECS task metadata: DesiredStatus=STOPPED while KnownStatus={known}"
        detail = {"task_arn": doc.get("TaskARN"), "known_status": known}
        return (WatchNotice(source=self.name, reason=reason, detail=detail),)


class Ec2Source:
    """EC2 IMDSv2: Spot ``instance-action`` and rebalance recommendations.

    The recommendation is advisory, so it is checked on every
    ``rebalance_every``-th poll only (every 30 s at the default 5 s interval),
    which keeps the polling cost down. The session token (``token_ttl`` s) is cached, refreshed a minute before it
    expires and fetched again after a 401; it is never logged. With
    ``probe=True`` (what ``watch="auto"`` uses) a first token request that gets
    no answer means "not on EC2" and polling stops quietly.
    """

    name = "ec2"

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        rebalance: bool = True,
        rebalance_every: int = 6,
        on_rebalance: Callable[[WatchNotice], object] | None = None,
        shutdown_on_rebalance: bool = False,
        token_ttl: int = 21600,
        probe: bool = False,
        allow_hosts: Collection[str] = (),
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        if endpoint is None:
            endpoint = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "").strip()
        if not endpoint:
            mode = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4").strip().lower()
            endpoint = IMDS_IPV6 if mode == "ipv6" else IMDS_IPV4
        what = "EC2 metadata endpoint (AWS_EC2_METADATA_SERVICE_ENDPOINT)"
        self.endpoint = check_url(endpoint, what=what, allow_hosts=allow_hosts)
        if not 1 <= token_ttl <= 21600:
            raise ValueError(f"token_ttl must be 1..21600 s, got {token_ttl!r}")
        self.rebalance = rebalance or shutdown_on_rebalance
        if rebalance_every < 1:
            raise ValueError(f"rebalance_every must be >= 1, got {rebalance_every!r}")
        self.rebalance_every = rebalance_every
        self._polls = 0
        self.on_rebalance = on_rebalance
        self.shutdown_on_rebalance = shutdown_on_rebalance
        self.token_ttl = token_ttl
        self.probe = probe
        self._clock = clock
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._reached = False
        self._rebalance_seen: str | None = None

    async def _session_token(self, fetch: Fetch) -> str:
        if self._token is not None and self._clock() < self._token_refresh_at:
            return self._token
        url = self.endpoint + "/latest/api/token"
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl)}
        try:
            answer = await fetch("PUT", url, headers=headers)
            expect(answer, url, (200,))
        except Exception as exc:
            if self.probe and not self._reached:
                raise SourceUnavailable(f"no EC2 instance metadata here ({exc})") from None
            raise
        token = answer.body.decode("ascii", errors="replace").strip()
        if not token or len(token) > 4096 or not token.isprintable():
            raise SourceError(f"{url}: the token answer is not a token")
        self._reached = True
        self._token = token
        self._token_refresh_at = self._clock() + self.token_ttl - min(60.0, self.token_ttl / 4)
        return token

    async def _get(self, fetch: Fetch, path: str) -> dict[str, Any] | None:
        url = self.endpoint + path
        for attempt in range(2):
            token = await self._session_token(fetch)
            answer = await fetch("GET", url, headers={"X-aws-ec2-metadata-token": token})
            if answer.status == 401 and attempt == 0:
                self._token = None  # expired or revoked: get a new one, once
                log_event("debug", "watch.token_refresh", source=self.name)
                continue
            if answer.status == 404:
                return None
            expect(answer, url, (200,))
            return parse_object(answer, url)
        raise SourceError(f"{url}: HTTP 401 with a fresh token")

    async def poll(self, fetch: Fetch) -> Sequence[WatchNotice]:
        """One look at ``spot/instance-action`` (and the rebalance recommendation)."""
        notices: list[WatchNotice] = []
        doc = await self._get(fetch, SPOT_PATH)
        if doc is not None:
            url = self.endpoint + SPOT_PATH
            action = string_field(doc, "action", url)
            if action not in SPOT_ACTIONS:
                raise SourceError(f"{url}: unknown action {action!r}")
            when = timestamp(string_field(doc, "time", url), "time", url)
            reason = f"EC2 Spot instance-action: {action} at {when:%Y-%m-%dT%H:%M:%SZ}"
            notices.append(
                WatchNotice(self.name, reason, time=when, detail={"action": action}),
            )
        self._polls += 1
        if self.rebalance and (self._polls - 1) % self.rebalance_every == 0:
            rebalance = await self._get(fetch, REBALANCE_PATH)
            if rebalance is not None:
                notices.extend(self._on_rebalance(rebalance))
        return notices

    def _on_rebalance(self, doc: Mapping[str, Any]) -> Sequence[WatchNotice]:
        url = self.endpoint + REBALANCE_PATH
        raw = string_field(doc, "noticeTime", url)
        timestamp(raw, "noticeTime", url)  # validated, not used: a recommendation has no deadline
        reason = f"EC2 rebalance recommendation at {raw}"
        notice = WatchNotice(self.name, reason, kind="rebalance", time=None, detail={"at": raw})
        if raw == self._rebalance_seen:
            return (notice,) if self.shutdown_on_rebalance else ()
        self._rebalance_seen = raw
        log_event("warning", "watch.rebalance", source=self.name, notice_time=raw)
        if self.on_rebalance is not None:
            try:
                self.on_rebalance(notice)
            except Exception as exc:
                log_event("error", "watch.callback_failed", source=self.name, error=repr(exc))
        return (notice,) if self.shutdown_on_rebalance else ()


class UrlSource:
    """A custom endpoint: ``404``/``204`` = no notice; ``200`` + JSON object = notice.

    The object may carry ``reason`` (string), ``time`` (ISO 8601 with zone) or
    ``within`` (seconds from now) for the deadline.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "url",
        headers: Mapping[str, str] | None = None,
        allow_hosts: Collection[str] = (),
    ) -> None:
        self.name = name
        self.url = check_url(url, what=f"watch source {name!r}", allow_hosts=allow_hosts)
        self.headers = dict(headers or {})

    async def poll(self, fetch: Fetch) -> Sequence[WatchNotice]:
        """One GET of the URL."""
        answer = await fetch("GET", self.url, headers=self.headers)
        if answer.status in (204, 404):
            return ()
        expect(answer, self.url, (200,))
        doc = parse_object(answer, self.url)
        reason = doc.get("reason", f"notice from {self.name}")
        if not isinstance(reason, str):
            raise SourceError(f"{self.url}: field 'reason' is not a string")
        when: datetime | None = None
        if "time" in doc:
            when = timestamp(string_field(doc, "time", self.url), "time", self.url)
        within = doc.get("within")
        if within is not None:
            if isinstance(within, bool) or not isinstance(within, int | float):
                raise SourceError(f"{self.url}: field 'within' is not a number")
            if not math.isfinite(within) or within < 0:
                raise SourceError(f"{self.url}: field 'within' must be finite and >= 0")
            at = datetime.now(UTC) + timedelta(seconds=within)
            when = at if when is None else min(when, at)
        return (WatchNotice(self.name, reason[:256], time=when),)


# ------------------------------------------------------------------ spec


def sources_from_spec(
    spec: Sequence[object], *, environ: Mapping[str, str] | None = None
) -> list[Source]:
    """Build sources from a normalised ``watch`` option (see ``_config``).

    Items: ``"auto"`` (``ecs`` when ``ECS_CONTAINER_METADATA_URI_V4`` is set;
    ``ec2`` probed unless ``AWS_EC2_METADATA_DISABLED`` is true), ``"ecs"``,
    ``"ec2"``, ``"url:<URL>"``, or a :class:`Source` object.
    """
    env = os.environ if environ is None else environ
    ec2_disabled = env.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true"
    out: list[Source] = []
    names: set[str] = set()
    for item in spec:
        if not isinstance(item, str):
            out.append(item)  # type: ignore[arg-type]  # checked by _config
            continue
        if item == "auto":
            if env.get("ECS_CONTAINER_METADATA_URI_V4") and "ecs" not in names:
                names.add("ecs")
                out.append(EcsSource(environ=env))
            if not ec2_disabled and "ec2" not in names:
                names.add("ec2")
                out.append(Ec2Source(environ=env, probe=True))
        elif item == "ecs" and "ecs" not in names:
            names.add("ecs")
            out.append(EcsSource(environ=env))
        elif item == "ec2" and "ec2" not in names:
            names.add("ec2")
            if ec2_disabled:
                log_event(
                    "warning",
                    "watch.disabled",
                    source="ec2",
                    reason="AWS_EC2_METADATA_DISABLED is true",
                )
            else:
                out.append(Ec2Source(environ=env))
        elif item.startswith("url:"):
            n = sum(isinstance(s, UrlSource) for s in out)
            out.append(UrlSource(item[4:], name="url" if n == 0 else f"url-{n + 1}"))
    return out
