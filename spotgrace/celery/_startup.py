"""Start-up checks of a worker: settings changed after install(), an untested broker."""

from __future__ import annotations

from typing import Any

from spotgrace._core._eventlog import emit

__all__ = ["broker_scheme", "check_broker", "check_settings"]

#: What a setting changed after install() costs, for the start-up warning.
_CHANGED = {
    "task_acks_late": "tasks are acked when they start: a cut or killed task is lost",
    "task_reject_on_worker_lost": "a pool process that dies mid-task acks its message: lost",
    "worker_prefetch_multiplier": "more messages wait in the worker; they go back at the cut",
}


#: Broker URL schemes the sequence is tested on (kombu's Redis transport).
_TESTED_BROKERS = frozenset({"redis", "rediss"})


def broker_scheme(worker: Any) -> str:
    """The scheme of the worker's broker URL (``amqp`` when none is set, as Celery's default)."""
    conf = getattr(getattr(worker, "app", None), "conf", None)
    url = str((conf.get("broker_url") if conf is not None else None) or "amqp://")
    return url.split("://", 1)[0].split("+")[0].lower() or "amqp"


def check_broker(worker: Any, *, event_loop: bool) -> str:
    """Warn when the worker's broker is not one the sequence is tested on; its scheme."""
    broker = broker_scheme(worker)
    if broker not in _TESTED_BROKERS:
        emit(
            "warning",
            "celery.broker_untested",
            broker=broker,
            tested=sorted(_TESTED_BROKERS),
            requeue="message.reject(requeue=True), not Redis's head-of-queue restore",
            event_loop=event_loop,
        )
    return broker


def check_settings(worker: Any, settings: dict[str, Any]) -> None:
    """Log every setting install() set that ``worker`` runs with another value of."""
    conf = getattr(getattr(worker, "app", None), "conf", None)
    if conf is None:
        return
    for key, want in settings.items():
        have = conf.get(key)
        if have != want:
            emit(
                "warning",
                "celery.setting_changed",
                setting=key,
                value=have,
                spotgrace_value=want,
                note=_CHANGED.get(key, "set after install(): yours wins"),
            )
