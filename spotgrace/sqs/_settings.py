"""The consumer's options: keyword arguments, validated at construction, budget-checked at run.

Public names are re-exported by :mod:`spotgrace.sqs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spotgrace import ConfigError

__all__ = ["ConsumerSettings", "default_wait_time"]

#: SQS limits: a long poll waits at most 20 s; a batch holds at most 10 messages;
#: a message stays invisible at most 12 hours.
MAX_WAIT_TIME = 20
MAX_BATCH = 10
MAX_VISIBILITY = 43200


def default_wait_time(budget: float) -> int:
    """The long-poll wait that fits the shutdown budget: a fifth of it, 1 to 20 s.

    A poll in progress at the notice is not aborted (see ``docs/sqs.md``), so it
    may hold the exit back by at most this long: 5 s for ``stop_timeout=30``
    (budget 27 s), 20 s for 120 s (budget 115 s), 1 s below a 10 s budget.
    """
    return int(min(MAX_WAIT_TIME, max(1, math.floor(budget / 5))))


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be {low} to {high}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """Validated options of one :class:`~spotgrace.sqs.SQSConsumer` (see ``docs/sqs.md``)."""

    #: Handler threads: messages processed at once.
    concurrency: int = 4
    #: Messages asked for per ``ReceiveMessage`` (1-10); never more than there is room for.
    batch_size: int = 10
    #: Messages held beyond ``concurrency``, received but not started (heartbeated too).
    prefetch: int = 0
    #: Long-poll wait; ``None``: :func:`default_wait_time` of the budget.
    wait_time_seconds: int | None = None
    #: Visibility timeout set on receive and renewed by the heartbeat; also how
    #: late a message is after a crash or ``kill -9``.
    visibility_timeout: int = 30
    #: Seconds between heartbeats, at most half ``visibility_timeout``; ``None``: a third.
    heartbeat_interval: float | None = None
    #: Visibility set after the handler raised (a retry delay); ``None``: left as
    #: it is, so the message comes back when its visibility timeout runs out.
    retry_delay: int | None = None
    #: Poison guard: a message received more often than this is moved to
    #: ``dead_letter_queue_url`` instead of being handled. ``None``: off (use the
    #: queue's redrive policy, which is the first line of defence).
    max_receive_count: int | None = None
    dead_letter_queue_url: str | None = None

    def __post_init__(self) -> None:
        _int("concurrency", self.concurrency, 1, 1000)
        _int("batch_size", self.batch_size, 1, MAX_BATCH)
        _int("prefetch", self.prefetch, 0, 1000)
        if self.wait_time_seconds is not None:
            _int("wait_time_seconds", self.wait_time_seconds, 0, MAX_WAIT_TIME)
        _int("visibility_timeout", self.visibility_timeout, 1, MAX_VISIBILITY)
        if self.heartbeat_interval is not None:
            hb = self.heartbeat_interval
            if isinstance(hb, bool) or not isinstance(hb, int | float):
                raise TypeError(f"heartbeat_interval must be a number, not {type(hb).__name__}")
            if not (0 < hb <= self.visibility_timeout / 2) or math.isnan(hb):
                raise ConfigError(
                    f"heartbeat_interval must be more than 0 and at most half the "
                    f"visibility_timeout ({self.visibility_timeout} s), got {hb!r}: a heartbeat "
                    f"that fails once must leave time for the next before the message reappears"
                )
        if self.retry_delay is not None:
            _int("retry_delay", self.retry_delay, 0, MAX_VISIBILITY)
        if self.max_receive_count is not None:
            _int("max_receive_count", self.max_receive_count, 1, 1000)
            if not self.dead_letter_queue_url:
                raise ConfigError(
                    "max_receive_count needs dead_letter_queue_url: a poison message is moved "
                    "there, never dropped (or leave it None and give the queue a redrive policy)"
                )
        if self.dead_letter_queue_url is not None and not isinstance(
            self.dead_letter_queue_url, str
        ):
            raise TypeError("dead_letter_queue_url must be a str")

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats."""
        if self.heartbeat_interval is not None:
            return float(self.heartbeat_interval)
        return self.visibility_timeout / 3

    @property
    def max_held(self) -> int:
        """Most messages held at once: running plus received-not-started."""
        return self.concurrency + self.prefetch

    def wait_time_for(self, budget: float) -> int:
        """The long-poll wait for a shutdown ``budget``; ConfigError if it would not fit."""
        if self.wait_time_seconds is None:
            return default_wait_time(budget)
        if self.wait_time_seconds > budget / 2:
            raise ConfigError(
                f"wait_time_seconds={self.wait_time_seconds} is more than half the shutdown "
                f"budget ({budget:g} s): a long poll in progress at the notice would eat it; "
                f"use at most {math.floor(budget / 2)} (or leave it None)"
            )
        return self.wait_time_seconds
