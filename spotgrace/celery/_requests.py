"""Celery's requests at the cut: which the worker holds, and putting their messages back."""

from __future__ import annotations

import time
from typing import Any

from celery.worker import state as worker_state

from spotgrace._core._eventlog import emit

__all__ = ["_all_requests", "_describe", "_held", "_requests", "_requeue_now"]


def _requests(source: Any) -> list[Any]:
    """A snapshot of one of Celery's request sets (the event loop may change it)."""
    for _ in range(5):
        try:
            return list(source)
        except RuntimeError:  # changed size during iteration
            time.sleep(0.001)
    return []


def _all_requests() -> list[Any]:
    """Every request the worker holds: running, waiting for a slot, or held for an ETA.

    Celery 5.5+ keeps ETA/countdown requests in ``scheduled_requests``, not in
    ``reserved_requests``; ``requests`` (by id) covers both. Deduplicated, in
    a stable order.
    """
    seen: dict[int, Any] = {}
    sources: list[Any] = [
        worker_state.reserved_requests,
        getattr(worker_state, "scheduled_requests", ()),
    ]
    by_id = getattr(worker_state, "requests", None)
    if by_id is not None:
        sources.append(_requests(by_id.values()))
    for source in sources:
        for req in _requests(source):
            seen.setdefault(id(req), req)
    return list(seen.values())


def _held(req: Any) -> bool:
    """A request the worker holds for later (ETA/countdown), not running."""
    return getattr(req, "eta", None) is not None and getattr(req, "time_start", None) is None


def _requeue_now(req: Any) -> bool:
    """Put ``req``'s message back on its queue now (``Request.reject`` defers it to the loop).

    On Redis it goes back at the head of the queue, as kombu's own restore of
    unacked messages does, so the next free worker takes it; ``reject`` would
    put it behind every waiting message. Other brokers: ``reject(requeue=True)``.
    """
    message = req.message
    if message.acknowledged:
        return False
    qos = getattr(message.channel, "qos", None)
    restore = getattr(qos, "restore_by_tag", None)
    done = False
    if restore is not None and qos is not None:  # kombu's Redis transport
        try:
            restore(message.delivery_tag, leftmost=False)
        except TypeError as exc:  # kombu's internals changed: say so, then the public way
            emit(
                "error",
                "celery.requeue_head_failed",
                error=repr(exc),
                fallback="message.reject(requeue=True): back of the queue",
            )
        else:
            qos.ack(message.delivery_tag)  # kombu's bookkeeping; the broker copy is restored
            done = True
    if not done:
        message.reject(requeue=True)
    req.acknowledged = True  # so Celery acks or rejects it no more
    return True


def _describe(req: Any) -> dict[str, Any]:
    started = getattr(req, "time_start", None)
    return {
        "task": getattr(req, "name", "?"),
        "task_id": getattr(req, "id", "?"),
        "pool_pid": getattr(req, "worker_pid", None),
        "running_for": round(time.time() - started, 3) if started else None,
    }
