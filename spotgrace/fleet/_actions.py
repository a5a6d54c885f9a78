"""What the companion does with each kind of event (see docs/fleet.md).

- Spot interruption of a managed service's task → the service's action
  (``alert``; ``scale-out``: ``desiredCount`` = baseline + N * interrupted
  tasks, absolute; ``redeploy``: ``forceNewDeployment`` unless a deployment is
  already under way), then an SNS alert saying what was done.
- Placement failure (no Fargate Spot capacity) → one alert per episode and,
  with a twin configured, the on-demand twin's ``desiredCount`` raised to its
  baseline + the Spot service's shortfall.
- Steady state (event, or the scheduled tick) → ``_reconcile.py`` (undo the
  scale-out, fail the twin back after the hold-off, longer when it flaps).

Every event is claimed by id (and, for a task, by task ARN) before acting, so
replays and the several events of one interruption act once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from spotgrace import ConfigError

from ._aws import Ecs, Messenger, ServiceView
from ._claims import Once
from ._config import Action, FleetConfig, ServiceRef
from ._errors import FleetError
from ._events import EventKind, FleetEvent, classify
from ._log import JsonLog
from ._reconcile import CONFLICT_ATTEMPTS, Reconciler, flap_hold_off, pending_to
from ._state import StateStore

__all__ = ["Companion"]

Result = dict[str, Any]
#: After one invocation forced a deployment, others skip theirs for this long
#: (two tasks of a service interrupted together: one redeploy, not two).
REDEPLOY_WINDOW = 120.0


class Companion(Once, Reconciler):
    """Applies events to ECS; one per invocation (or per CLI run)."""

    def __init__(
        self,
        *,
        config: FleetConfig,
        ecs: Ecs,
        messenger: Messenger,
        store: StateStore,
        log: JsonLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ecs = ecs
        self.messenger = messenger
        self.store = store
        self.log = log
        self.clock = clock

    # ------------------------------------------------------------------ entry

    def handle(self, event: Mapping[str, Any]) -> list[Result]:
        """Apply one EventBridge event; returns one result per service touched."""
        ev = classify(event)
        if ev.kind is EventKind.TICK:
            return self._tick(ev)
        if ev.kind is EventKind.OTHER:
            self.log.warning("event matches no fleet pattern", event_id=ev.event_id)
            return [{"kind": ev.kind.value, "result": "ignored"}]
        if ev.cluster is None:
            raise ValueError(f"{ev.kind.value} event {ev.event_id!r} has no detail.clusterArn")
        foreign = self._foreign(ev)
        if foreign is not None:
            return [self._ignored(ev, None, foreign)]
        service = ev.service
        if ev.kind is EventKind.INTERRUPTION:
            if ev.task_arn is None:
                raise ValueError(f"interruption event {ev.event_id!r} names no task")
            if service is None:
                group = self.ecs.task_group(ev.cluster, ev.task_arn)
                if group is not None and group.startswith("service:"):
                    service = group.removeprefix("service:")
        if service is None:
            return [self._ignored(ev, None, "not a service's task")]
        try:
            ref = ServiceRef(ev.cluster, service)
        except ConfigError:  # not an ECS name, so none of ours: ignore, don't fail
            return [self._ignored(ev, None, "service not managed")]
        if ref not in self.config.services:
            return [self._ignored(ev, ref, "service not managed")]
        keys = [f"event#{ev.event_id}"] if ev.event_id else []
        if ev.kind is EventKind.INTERRUPTION:
            keys.append(f"task#{ev.task_arn}")
            return [self._once(ev, ref, keys, lambda: self._interruption(ref, ev))]
        if ev.kind is EventKind.PLACEMENT_FAILURE:
            return [self._once(ev, ref, keys, lambda: self._placement_failure(ref, ev))]
        return [self._once(ev, ref, keys, lambda: self._reconcile(ref, ev))]

    def _foreign(self, ev: FleetEvent) -> str | None:
        """Why the event's cluster is not ours (another region or account), else None.

        A same-named cluster elsewhere must not be acted on here (a central event
        bus, a cross-account rule, or an event fed to ``spotgrace fleet handle``).
        """
        detail = ev.raw.get("detail")
        arn = detail.get("clusterArn") if isinstance(detail, Mapping) else None
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) < 6:
            return None
        region, account = parts[3], parts[4]
        ours = self.ecs.client.meta.region_name
        if ours and region != ours:
            return f"cluster in region {region!r}, not {ours!r}"
        if self.config.account_id is not None and account != self.config.account_id:
            return f"cluster in account {account!r}, not {self.config.account_id!r}"
        return None

    def _tick(self, ev: FleetEvent) -> list[Result]:
        """Reconcile every managed service; one failing service does not stop the others,
        but its error is raised once all were tried."""
        results: list[Result] = []
        errors: list[Exception] = []
        for ref in sorted(self.config.services):
            try:
                results.append(self._reconcile(ref, ev))
            except Exception as exc:
                errors.append(exc)
                self.log.error(
                    "reconcile failed",
                    cluster=ref.cluster,
                    service=ref.service,
                    result="failed",
                    error=f"{type(exc).__name__}: {exc}",
                )
        if errors:
            raise errors[0]
        return results

    def _ignored(self, ev: FleetEvent, ref: ServiceRef | None, why: str) -> Result:
        result = {"kind": ev.kind.value, "service": str(ref) if ref else None}
        result |= {"result": "ignored", "reason": why}
        self.log.info(
            f"ignored: {why}",
            event_id=ev.event_id,
            task_arn=ev.task_arn,
            cluster=ref.cluster if ref else None,
            service=ref.service if ref else None,
            kind=ev.kind.value,
            result="ignored",
            reason=why,
        )
        return result

    def _update_record(
        self, ref: ServiceRef, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Read-modify-write the service record with optimistic locking."""
        for _ in range(CONFLICT_ATTEMPTS):
            data, version = self.store.get_record(ref)
            change(data)
            if self.store.put_record(ref, data, version):
                return data
        raise FleetError("PutItem", "Conflict", f"{ref}: record changed {CONFLICT_ATTEMPTS} times")

    # ---------------------------------------------------------- interruption

    def _interruption(self, ref: ServiceRef, ev: FleetEvent) -> Result:
        view = self.ecs.describe(ref)
        policy = self.config.policy_for(ref, view.tags)
        log = self.log.bind(
            event_id=ev.event_id,
            cluster=ref.cluster,
            service=ref.service,
            task_arn=ev.task_arn,
            action=policy.action.value,
        )
        result: Result = {
            "kind": ev.kind.value,
            "service": str(ref),
            "task_arn": ev.task_arn,
            "action": policy.action.value,
        }
        age = self.clock() - ev.time if ev.time is not None else 0.0
        error: Exception | None = None
        try:
            if age > self.config.max_event_age:
                result |= {"result": "stale-alert-only", "event_age": round(age, 1)}
            elif policy.action is Action.SCALE_OUT:
                result |= self._scale_out(ref, ev)
            elif policy.action is Action.REDEPLOY:
                result["result"] = self._redeploy(ref, view)
            else:
                result["result"] = "alerted"
        except Exception as exc:
            error = exc
            result |= {"result": "failed", "error": f"{type(exc).__name__}: {exc}"}
        try:
            result["alerted"] = self.messenger.alert(
                f"Spot interruption: {ref}", {**result, "event_id": ev.event_id}
            )
        except Exception as exc:
            log.error("alert failed", error=f"{type(exc).__name__}: {exc}")
            if error is None:
                raise
        if error is not None:
            log.error("interruption action failed", result="failed", error=result["error"])
            raise error
        log.info(
            "interruption handled",
            **{k: v for k, v in result.items() if k not in ("service", "task_arn", "action")},
        )
        return result

    def _redeploy(self, ref: ServiceRef, view: ServiceView) -> str:
        """forceNewDeployment, unless one is under way or another invocation just forced
        one (recorded first, so of two racing invocations only one forces)."""
        if view.deploying:
            return "skipped-deployment-in-progress"
        now = self.clock()
        won = False

        def change(data: dict[str, Any]) -> None:
            nonlocal won
            last = data.get("redeployed_at")
            won = not (isinstance(last, int | float) and 0 <= now - last < REDEPLOY_WINDOW)
            if won:
                data["redeployed_at"] = now

        self._update_record(ref, change)
        if not won:
            return "skipped-deployment-in-progress"
        try:
            self.ecs.force_deploy(ref)
        except Exception:  # let a redrive try again: un-record ours, then fail loudly
            self._update_record(
                ref, lambda d: d.pop("redeployed_at") if d.get("redeployed_at") == now else None
            )
            raise
        return "redeployed"

    def _scale_out(self, ref: ServiceRef, ev: FleetEvent) -> Result:
        now = self.clock()
        seen: dict[str, int] = {}

        def change(data: dict[str, Any]) -> None:
            # Read the count after the record, inside the optimistic-lock loop; while a
            # committed restore is still being applied, its target is the count.
            pending = pending_to(data, ref.service)
            desired = pending if pending is not None else self.ecs.describe(ref).desired
            seen["desired"] = desired
            so = data.get("scale_out")
            if so and pending is None and not so["baseline"] <= desired <= so["target"]:
                # Outside what we could have set: someone else (a person, autoscaling)
                # changed the count meanwhile. Theirs is the service's size now: scale
                # out from it, and restore to it, never below it.
                self.log.warning(
                    "desiredCount changed by someone else: scaling out from it",
                    cluster=ref.cluster,
                    service=ref.service,
                    desired=desired,
                    ours=so["target"],
                )
                so = None
            so = so or {"baseline": desired, "tasks": []}
            if ev.task_arn not in so["tasks"]:
                so["tasks"].append(ev.task_arn)
            target = so["baseline"] + self.config.scale_out_by * len(so["tasks"])
            if self.config.max_desired_count is not None:
                target = max(so["baseline"], min(target, self.config.max_desired_count))
            so |= {"target": target, "last_interruption": now}
            data["scale_out"] = so
            data["steady_since"] = None

        so = self._update_record(ref, change)["scale_out"]
        out: Result = {"baseline": so["baseline"], "target": so["target"]}
        out |= {"desired_before": seen["desired"], "result": "already-scaled-out"}
        desired, target = seen["desired"], so["target"]
        # Concurrent invocations (other tasks of this service) may each write a higher
        # target; whoever set a count re-reads the record and follows a newer target,
        # so the last UpdateService carries the last target whatever the write order.
        for _ in range(CONFLICT_ATTEMPTS):
            if desired >= target:
                break
            self.ecs.set_desired(ref, target)
            out["result"] = "scaled-out"
            desired = target
            latest = self.store.get_record(ref)[0].get("scale_out")
            if latest is None:
                break  # restored meanwhile
            target = latest["target"]
        return out

    # ------------------------------------------------------- placement failure

    def _placement_failure(self, ref: ServiceRef, ev: FleetEvent) -> Result:
        view = self.ecs.describe(ref)
        policy = self.config.policy_for(ref, view.tags)
        twin = ServiceRef(ref.cluster, policy.fallback_twin) if policy.fallback_twin else None
        shortfall = max(view.desired - view.running, 1)
        first = False
        twin_desired: int | None = None

        def change(data: dict[str, Any]) -> None:
            nonlocal first, twin_desired
            if twin is not None:  # read after the record (see _scale_out)
                pending = pending_to(data, twin.service)
                twin_desired = pending if pending is not None else self.ecs.describe(twin).desired
            fb = data.get("fallback")
            if fb is None:
                now = self.clock()
                flaps, hold_off = flap_hold_off(data, self.config.hold_off, now)
                fb = {"since": now, "twin": policy.fallback_twin}
                fb |= {"flaps": flaps, "hold_off": hold_off}
                if twin_desired is not None:
                    fb["twin_baseline"] = twin_desired
            first = not fb.get("alerted", False)  # one alert per episode, once it went out
            fb["alerted"] = True
            if twin_desired is not None:
                target = fb.get("twin_baseline", 0) + shortfall
                if self.config.max_desired_count is not None:
                    target = min(target, self.config.max_desired_count)
                fb["twin_target"] = max(fb.get("twin_target", 0), target)
            data["fallback"] = fb
            data["steady_since"] = None

        fb = self._update_record(ref, change)["fallback"]
        result: Result = {
            "kind": ev.kind.value,
            "service": str(ref),
            "shortfall": shortfall,
            "twin": policy.fallback_twin,
            "hold_off": fb.get("hold_off", self.config.hold_off),
        }
        if fb.get("flaps"):
            result["flaps"] = fb["flaps"]
        try:
            if twin is not None and twin_desired is not None:
                result |= {"twin_before": twin_desired, "twin_target": fb["twin_target"]}
                if twin_desired < fb["twin_target"]:
                    self.ecs.set_desired(twin, fb["twin_target"])
                    result["result"] = "fell-back"
                else:
                    result["result"] = "fallback-already-active"
            else:
                result["result"] = "alerted" if first else "already-alerted"
            if first:
                result["alerted"] = self.messenger.alert(
                    f"No Fargate Spot capacity: {ref}", {**result, "event_id": ev.event_id}
                )
        except Exception:
            if first:  # the alert did not go out: a redrive must send it
                self._update_record(ref, _alert_not_sent)
            raise
        self.log.info(
            "placement failure handled",
            event_id=ev.event_id,
            cluster=ref.cluster,
            service=ref.service,
            action="fallback",
            **{k: v for k, v in result.items() if k != "service"},
        )
        return result


def _alert_not_sent(data: dict[str, Any]) -> None:
    if data.get("fallback"):
        data["fallback"]["alerted"] = False
