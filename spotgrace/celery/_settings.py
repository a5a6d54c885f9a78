"""Celery's own settings, derived from spotgrace's one budget.

Kept free of any Celery import, so that the numbers (and their docs) can be
computed and tested without a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Budget", "celery_settings"]

#: The share of the budget running tasks get to finish when no
#: ``drain_timeout`` is given: the same rule as the core's drain step, so a
#: fifth of the budget is kept for the cut, the consumer shutdown and the hooks.
DRAIN_SHARE = 0.8


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How one worker's shutdown is timed, in seconds from the notice."""

    #: The platform's ``stopTimeout`` (SIGTERM to SIGKILL).
    stop_timeout: float
    #: Kept in hand before the platform's SIGKILL.
    margin: float
    #: How long running tasks may go on after the notice before they are cut
    #: (requeued and stopped).
    drain: float

    @property
    def budget(self) -> float:
        """Notice to deadline: ``stop_timeout - margin``."""
        return self.stop_timeout - self.margin

    @classmethod
    def from_options(
        cls, *, stop_timeout: float, margin: float, drain_timeout: float | None
    ) -> Budget:
        """The drain is ``drain_timeout`` (capped by the budget), else 80% of the budget."""
        budget = stop_timeout - margin
        drain = DRAIN_SHARE * budget if drain_timeout is None else min(drain_timeout, budget)
        return cls(stop_timeout=stop_timeout, margin=margin, drain=round(drain, 3))


def celery_settings(budget: Budget) -> dict[str, Any]:
    """The Celery settings :func:`spotgrace.celery.install` sets (``docs/celery.md``).

    - ``task_acks_late``: a message is acked after its task finished, so a task
      cut at the deadline (or a worker killed) leaves its message on the broker.
    - ``task_reject_on_worker_lost``: a pool process that dies mid-task
      requeues the message instead of acking it as failed.
    - ``worker_prefetch_multiplier = 1``: a worker holds no more messages than
      it has pool slots, so nothing waits in a stopping worker's buffer.
    - ``worker_soft_shutdown_timeout = drain``: Celery's own cold shutdown
      (SIGQUIT, a second Ctrl-C) gets the same bound instead of none.
    - ``worker_enable_soft_shutdown_on_idle = False``: an idle worker does not
      sleep out that bound.
    """
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_soft_shutdown_timeout": budget.drain,
        "worker_enable_soft_shutdown_on_idle": False,
    }
