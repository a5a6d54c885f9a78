"""The Lambda entry point, and the same logic for the CLI.

``handler(event, context)`` reads :class:`FleetConfig` from the environment,
makes the clients, applies the event and returns a summary. On any error it
logs the error (JSON, level ERROR), sends ``{event, error}`` to the
dead-letter queue (``SPOTGRACE_FLEET_DLQ_URL``) and re-raises, so the
invocation fails visibly too. The function's own async retries should be 0
(the templates set that): the handler already retried throttling inside.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ._actions import Companion
from ._aws import AwsClients, Ecs, Messenger, make_clients, retry_logger
from ._config import Action, FleetConfig
from ._events import classify
from ._log import JsonLog
from ._state import CLAIM_LEASE, DryRunStore, DynamoStore, MemoryStore, StateStore

__all__ = ["DLQ_RESERVE", "handle_event", "handler"]

#: Seconds kept back from the retries for the dead-letter send (one slow attempt:
#: connect 3 s + read 10 s, plus a retry).
DLQ_RESERVE = 15.0


def _store(config: FleetConfig, clients: AwsClients, dry_run: bool, log: JsonLog) -> StateStore:
    if config.table_name is None:
        needs_state = config.fallback_twins or config.default_action is Action.SCALE_OUT
        needs_state = needs_state or Action.SCALE_OUT in config.actions.values()
        if needs_state and not dry_run:
            log.warning("no SPOTGRACE_FLEET_TABLE: scale-out/fallback state lasts one invocation")
        return MemoryStore()
    table = DynamoStore(
        clients.dynamodb, config.table_name, config.retry, log_retry=retry_logger(log)
    )
    return DryRunStore(table) if dry_run else table


def handle_event(
    event: Mapping[str, Any],
    *,
    config: FleetConfig,
    clients: AwsClients,
    dry_run: bool = False,
    request_id: str | None = None,
    clock: Callable[[], float] = time.time,
    log_stream: TextIO | None = None,
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Apply one EventBridge event; see the module docstring.

    ``dry_run``: read ECS and the state table but make no writes (no
    UpdateService, Publish or state writes); the writes it would make are in
    the result's ``planned``.
    ``time_budget``: seconds left before the caller's timeout (Lambda's
    remaining time; at most the claims' lease, which is also the default).
    Retries stop :data:`DLQ_RESERVE` seconds before it, so the event still
    reaches the dead-letter queue; the DLQ send itself stops a second before.

    Returns ``{"event_id", "results", "planned"}``.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"event must be a mapping, got {type(event).__name__}")
    ev = classify(event)
    log = JsonLog(log_stream, clock=clock).bind(
        request_id=request_id,
        dry_run=dry_run or None,
        event_id=ev.event_id or None,
        cluster=ev.cluster,
        service=ev.service,
        task_arn=ev.task_arn,
    )
    # Never retry past the claim's lease either: after it another invocation may take
    # the event over and act at the same time (the CLI has no other time limit).
    budget = CLAIM_LEASE if time_budget is None else min(time_budget, CLAIM_LEASE)
    start = config.retry.clock()
    retry = dataclasses.replace(config.retry, deadline=start + max(budget - DLQ_RESERVE, 0.0))
    dlq_retry = dataclasses.replace(retry, deadline=start + max(budget - 1.0, 0.0))
    config = dataclasses.replace(config, retry=retry)
    ecs = Ecs(clients.ecs, retry, log, dry_run=dry_run)
    messenger = Messenger(
        clients.sns,
        clients.sqs,
        retry,
        config.topic_arn,
        config.dlq_url,
        dry_run=dry_run,
        log_retry=retry_logger(log),
        dlq_retry=dlq_retry,
    )
    companion = Companion(
        config=config,
        ecs=ecs,
        messenger=messenger,
        store=_store(config, clients, dry_run, log),
        log=log,
        clock=clock,
    )
    event_id = str(event.get("id", ""))
    try:
        results = companion.handle(event)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error("event failed", event_id=event_id, result="failed", error=error)
        try:
            sent = messenger.dead_letter({"event": event, "error": error, "request_id": request_id})
        except Exception as dlq_exc:
            log.error("dead-letter queue failed", event_id=event_id, error=repr(dlq_exc))
            raise exc from dlq_exc
        log.error(
            "event sent to the dead-letter queue" if sent else "no dead-letter queue",
            result="dead-lettered" if sent else "failed",
        )
        raise
    return {"event_id": event_id, "results": results, "planned": ecs.planned + messenger.planned}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler (``spotgrace.fleet.handler``)."""
    config = FleetConfig.from_env(os.environ)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return handle_event(
        event,
        config=config,
        clients=make_clients(),
        request_id=getattr(context, "aws_request_id", None),
        time_budget=remaining() / 1000.0 if callable(remaining) else None,
    )
