"""What the companion does with each kind of event (see docs/fleet.md).

- Spot interruption of a managed service's task → the service's action
  (``alert``; ``scale-out``: ``desiredCount`` = baseline + N * interrupted
  tasks, absolute; ``redeploy``: ``forceNewDeployment`` unless a deployment is
  already under way), then an SNS alert saying what was done.
- Placement failure (no Fargate Spot capacity) → one alert per episode and,
  with a twin configured, the on-demand twin's ``desiredCount`` raised to its
  baseline + the Spot service's shortfall.
- Steady state (event, or the scheduled tick) → once steady for
  ``restore_after`` seconds, undo the scale-out; once steady for ``hold_off``
  seconds, fail the twin back. Only when the live count is still the one we
  set: a count someone else changed is left alone (and logged).

Every event is claimed by id (and, for a task, by task ARN) before acting, so
replays and the several events of one interruption act once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from spotgrace import ConfigError

from ._aws import Ecs, Messenger, ServiceView
from ._config import Action, FleetConfig, ServiceRef
from ._errors import FleetError
from ._events import EventKind, FleetEvent, classify
from ._log import JsonLog
from ._state import Claim, StateStore

__all__ = ["Companion"]

Result = dict[str, Any]
_CONFLICT_ATTEMPTS = 5


class Companion:
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

    def _once(
        self, ev: FleetEvent, ref: ServiceRef, keys: list[str], act: Callable[[], Result]
    ) -> Result:
        now = self.clock()
        held: list[str] = []
        for key in keys:
            claim = self.store.claim(key, now)
            if claim is not Claim.NEW:
                for mine in held:  # this event is handled: by whoever holds `key`
                    self.store.complete(mine, now)
                what = key.split("#", 1)[0]
                result = {"kind": ev.kind.value, "service": str(ref), "result": f"duplicate-{what}"}
                self.log.info(
                    f"duplicate {what} ({claim.value})",
                    event_id=ev.event_id,
                    task_arn=ev.task_arn,
                    cluster=ref.cluster,
                    service=ref.service,
                    action="none",
                    kind=ev.kind.value,
                    result=result["result"],
                )
                return result
            held.append(key)
        try:
            result = act()
        except BaseException:
            for key in reversed(held):
                self.store.release(key)
            raise
        for key in reversed(held):
            self.store.complete(key, self.clock())
        return result

    def _update_record(
        self, ref: ServiceRef, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Read-modify-write the service record with optimistic locking."""
        for _ in range(_CONFLICT_ATTEMPTS):
            data, version = self.store.get_record(ref)
            change(data)
            if self.store.put_record(ref, data, version):
                return data
        raise FleetError("PutItem", "Conflict", f"{ref}: record changed {_CONFLICT_ATTEMPTS} times")

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
                result |= self._scale_out(ref, view, ev)
            elif policy.action is Action.REDEPLOY:
                if view.deploying:
                    result["result"] = "skipped-deployment-in-progress"
                else:
                    self.ecs.force_deploy(ref)
                    result["result"] = "redeployed"
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

    def _scale_out(self, ref: ServiceRef, view: ServiceView, ev: FleetEvent) -> Result:
        now = self.clock()

        def change(data: dict[str, Any]) -> None:
            so = data.get("scale_out") or {"baseline": view.desired, "tasks": []}
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
        out |= {"desired_before": view.desired, "result": "already-scaled-out"}
        desired, target = view.desired, so["target"]
        # Concurrent invocations (other tasks of this service) may each write a higher
        # target; whoever set a count re-reads the record and follows a newer target,
        # so the last UpdateService carries the last target whatever the write order.
        for _ in range(_CONFLICT_ATTEMPTS):
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
        twin_view = self.ecs.describe(twin) if twin else None
        shortfall = max(view.desired - view.running, 1)
        first = False

        def change(data: dict[str, Any]) -> None:
            nonlocal first
            fb = data.get("fallback")
            first = fb is None
            if fb is None:
                fb = {"since": self.clock(), "twin": policy.fallback_twin}
                if twin_view is not None:
                    fb["twin_baseline"] = twin_view.desired
            if twin_view is not None:
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
        }
        if twin is not None and twin_view is not None:
            result |= {"twin_before": twin_view.desired, "twin_target": fb["twin_target"]}
            if twin_view.desired < fb["twin_target"]:
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
        self.log.info(
            "placement failure handled",
            event_id=ev.event_id,
            cluster=ref.cluster,
            service=ref.service,
            action="fallback",
            **{k: v for k, v in result.items() if k != "service"},
        )
        return result

    # ------------------------------------------------------------ steady state

    def _reconcile(self, ref: ServiceRef, ev: FleetEvent) -> Result:
        for _ in range(_CONFLICT_ATTEMPTS):
            done = self._reconcile_once(ref, ev)
            if done is not None:
                return done
        raise FleetError("PutItem", "Conflict", f"{ref}: record changed {_CONFLICT_ATTEMPTS} times")

    def _reconcile_once(self, ref: ServiceRef, ev: FleetEvent) -> Result | None:
        data, version = self.store.get_record(ref)
        result: Result = {"kind": ev.kind.value, "service": str(ref)}
        so, fb = data.get("scale_out"), data.get("fallback")
        if not so and not fb:
            return result | {"result": "nothing-pending"}
        log = self.log.bind(
            event_id=ev.event_id, cluster=ref.cluster, service=ref.service, action="restore"
        )
        view = self.ecs.describe(ref)
        steady = view.steady
        if steady and so:
            states = self.ecs.task_states(ref.cluster, list(so["tasks"]))
            steady = all(s in (None, "STOPPED", "DELETED") for s in states.values())
        now = self.clock()
        if not steady:
            data["steady_since"] = None
            result["result"] = "waiting-for-steady"
        else:
            since = data.get("steady_since") or now
            data["steady_since"] = since
            result["steady_for"] = round(now - since, 1)
            result["result"] = "holding-off"
            if so and now - since >= self.config.restore_after:
                if view.desired == so["target"]:
                    self.ecs.set_desired(ref, so["baseline"])
                    result |= {"result": "restored", "desired": so["baseline"]}
                else:
                    log.warning(
                        "desiredCount changed by someone else: left alone",
                        desired=view.desired,
                        ours=so["target"],
                    )
                    result["result"] = "restore-skipped-changed"
                del data["scale_out"]
            if fb and now - since >= self.config.hold_off:
                result |= self._fail_back(ref, fb, log)
                del data["fallback"]
                result["alerted"] = self.messenger.alert(
                    f"Fargate Spot capacity back: {ref}", {**result, "event_id": ev.event_id}
                )
        if "scale_out" not in data and "fallback" not in data:
            data["steady_since"] = None
        if not self.store.put_record(ref, data, version):
            return None
        log.info("reconciled", **{k: v for k, v in result.items() if k != "service"})
        return result

    def _fail_back(self, ref: ServiceRef, fb: dict[str, Any], log: JsonLog) -> Result:
        if not fb.get("twin") or "twin_target" not in fb:
            return {"result": "recovered"}
        twin = ServiceRef(ref.cluster, fb["twin"])
        twin_view = self.ecs.describe(twin)
        if twin_view.desired != fb["twin_target"]:
            log.warning(
                "twin desiredCount changed by someone else: left alone",
                twin=fb["twin"],
                desired=twin_view.desired,
                ours=fb["twin_target"],
            )
            return {"result": "fail-back-skipped-changed"}
        self.ecs.set_desired(twin, fb["twin_baseline"])
        return {"result": "failed-back", "twin": fb["twin"], "twin_desired": fb["twin_baseline"]}
