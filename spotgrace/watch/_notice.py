"""What a source reports and the shape of a source: shared by the sources and the watcher."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from .._metadata._fetch import Answer

__all__ = ["Fetch", "Source", "WatchNotice"]


@dataclass(frozen=True)
class WatchNotice:
    """A notice that the process will be stopped.

    ``time`` is when the platform acts (the Spot ``time``), when known.
    """

    source: str
    reason: str
    kind: Literal["interruption", "rebalance"] = "interruption"
    time: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def within(self, now: datetime | None = None) -> float | None:
        """Seconds from ``now`` until :attr:`time` (never negative), or None."""
        if self.time is None:
            return None
        now = datetime.now(UTC) if now is None else now
        return max(0.0, (self.time - now).total_seconds())


class Fetch(Protocol):
    """What a source polls with: a bounded request returning an :class:`Answer`."""

    def __call__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Awaitable[Answer]: ...


class Source(Protocol):
    """An early-warning source: ``poll`` returns the notices that mean "shut down".

    ``poll`` raises :class:`SourceError` (or anything else) when it cannot tell;
    the watcher logs it, backs off and tries again.
    """

    name: str

    def poll(self, fetch: Fetch) -> Awaitable[Sequence[WatchNotice]]: ...
