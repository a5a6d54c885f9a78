"""Undoing a scale-out or a fallback once the service is steady again: commit, then act.

A reconcile first commits its decision to the service record (optimistic
lock) as ``undo`` entries, ``{"service", "from", "to", "what", "until"}``,
and only then sets the counts and alerts. So of two reconcilers racing (the
tick and a steady-state event) exactly one acts and alerts; and a new
interruption or placement failure arriving meanwhile sees the pending entry
and takes its ``to`` as the baseline (never the count about to be undone).
After setting a count, the reconciler re-reads the record and follows a
target committed meanwhile, so the last ``UpdateService`` carries the
latest intent whatever order the calls land in. An entry whose ``until``
has passed (its reconciler crashed) is taken over by the next reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._aws import Ecs, Messenger
from ._config import FleetConfig, ServiceRef
from ._errors import FleetError
from ._events import FleetEvent
from ._log import JsonLog
from ._state import CLAIM_LEASE, StateStore

__all__ = ["CONFLICT_ATTEMPTS", "MAX_FLAP_FACTOR", "Reconciler", "flap_hold_off", "pending_to"]

Result = dict[str, Any]
CONFLICT_ATTEMPTS = 5


MAX_FLAP_FACTOR = 8


def flap_hold_off(data: dict[str, Any], hold_off: float, now: float) -> tuple[int, float]:
    """A new shortage soon after a fail-back (within twice the hold-off it used) is a
    flap: each one doubles the next hold-off, up to ``MAX_FLAP_FACTOR`` times the
    configured one, so Spot that comes and goes does not flip the twin (and the
    alerts) every ``hold_off`` seconds. Returns ``(flaps, hold_off)``."""
    last = data.get("last_fail_back") or {}
    flaps = 0
    if "at" in last:
        used = hold_off * min(2 ** int(last.get("flaps", 0)), MAX_FLAP_FACTOR)
        if now - float(last["at"]) < 2 * max(used, 1.0):
            flaps = int(last.get("flaps", 0)) + 1
    return flaps, hold_off * min(2**flaps, MAX_FLAP_FACTOR)


def pending_to(data: dict[str, Any], service: str) -> int | None:
    """The count a committed, not yet finished undo is setting ``service`` to."""
    for entry in data.get("undo") or []:
        if entry.get("service") == service:
            return int(entry["to"])
    return None


class Reconciler:
    """The steady-state half of :class:`~spotgrace.fleet._actions.Companion`."""

    config: FleetConfig
    ecs: Ecs
    messenger: Messenger
    store: StateStore
    log: JsonLog
    clock: Callable[[], float]

    def _reconcile(self, ref: ServiceRef, ev: FleetEvent) -> Result:
        for _ in range(CONFLICT_ATTEMPTS):
            done = self._reconcile_once(ref, ev)
            if done is not None:
                return done
        raise FleetError("PutItem", "Conflict", f"{ref}: record changed {CONFLICT_ATTEMPTS} times")

    def _reconcile_once(self, ref: ServiceRef, ev: FleetEvent) -> Result | None:
        data, version = self.store.get_record(ref)
        result: Result = {"kind": ev.kind.value, "service": str(ref)}
        so, fb = data.get("scale_out"), data.get("fallback")
        now = self.clock()
        undo: list[dict[str, Any]] = list(data.get("undo") or [])
        stale = [e for e in undo if float(e.get("until", 0)) < now]
        if not so and not fb and not stale:
            return result | {"result": "nothing-pending"}
        log = self.log.bind(
            event_id=ev.event_id, cluster=ref.cluster, service=ref.service, action="restore"
        )
        mine: list[dict[str, Any]] = []
        for entry in stale:  # a crashed reconciler's: ours now
            entry["until"] = now + CLAIM_LEASE
            mine.append(entry)
        view = self.ecs.describe(ref)
        steady = view.steady
        if steady and so:
            states = self.ecs.task_states(ref.cluster, list(so["tasks"]))
            steady = all(s in (None, "STOPPED", "DELETED") for s in states.values())
        back = False
        if not steady:
            data["steady_since"] = None
            result["result"] = "waiting-for-steady"
        else:
            since = data.get("steady_since") or now
            data["steady_since"] = since
            result |= {"steady_for": round(now - since, 1), "result": "holding-off"}
            if so and now - since >= self.config.restore_after:
                mine.append(_entry(ref.service, so["target"], so["baseline"], "restore", now))
                del data["scale_out"]
            hold_off = float(fb.get("hold_off", self.config.hold_off)) if fb else 0.0
            if fb and now - since >= hold_off:
                data["last_fail_back"] = {"at": now, "flaps": int(fb.get("flaps", 0))}
                if fb.get("twin") and "twin_target" in fb:
                    twin, to = fb["twin"], fb["twin_baseline"]
                    mine.append(_entry(twin, fb["twin_target"], to, "fail-back", now))
                else:
                    result["result"] = "recovered"
                del data["fallback"]
                back = True
        undo += [e for e in mine if e not in stale]
        data["undo"] = undo
        if not undo:
            del data["undo"]
        if "scale_out" not in data and "fallback" not in data:
            data["steady_since"] = None
        if not self.store.put_record(ref, data, version):
            return None
        for entry in mine:  # committed: only this invocation acts on these
            result |= self._undo(ref, entry, log)
        if mine:
            self._forget(ref, mine)
        if back:
            result["alerted"] = self.messenger.alert(
                f"Fargate Spot capacity back: {ref}", {**result, "event_id": ev.event_id}
            )
        log.info("reconciled", **{k: v for k, v in result.items() if k != "service"})
        return result

    def _undo(self, ref: ServiceRef, entry: dict[str, Any], log: JsonLog) -> Result:
        target = ServiceRef(ref.cluster, entry["service"])
        restore = entry["what"] == "restore"
        done: Result = (
            {"result": "restored", "desired": entry["to"]}
            if restore
            else {"result": "failed-back", "twin": target.service, "twin_desired": entry["to"]}
        )
        current = self.ecs.describe(target).desired
        if current == entry["to"]:
            return done  # already set (a taken-over entry)
        if current != entry["from"]:
            log.warning(
                f"{'desiredCount' if restore else 'twin desiredCount'} changed by someone else:"
                " left alone",
                twin=None if restore else target.service,
                desired=current,
                ours=entry["from"],
            )
            return {"result": "restore-skipped-changed" if restore else "fail-back-skipped-changed"}
        self.ecs.set_desired(target, entry["to"])
        latest = self.store.get_record(ref)[0]
        so, fb = latest.get("scale_out"), latest.get("fallback")
        newer = None
        if restore and so:
            newer = so["target"]
        elif not restore and fb and fb.get("twin") == target.service:
            newer = fb.get("twin_target")
        if newer is not None and newer > entry["to"]:
            log.info("a new episode began meanwhile: following its target", desired=newer)
            self.ecs.set_desired(target, newer)
        return done

    def _forget(self, ref: ServiceRef, entries: list[dict[str, Any]]) -> None:
        """Drop finished entries (if this keeps conflicting, they expire and are retaken)."""
        for _ in range(CONFLICT_ATTEMPTS):
            data, version = self.store.get_record(ref)
            undo = list(data.get("undo") or [])
            left = [e for e in undo if e not in entries]
            if len(left) == len(undo):
                return
            data["undo"] = left
            if not left:
                del data["undo"]
            if self.store.put_record(ref, data, version):
                return


def _entry(service: str, frm: int, to: int, what: str, now: float) -> dict[str, Any]:
    return {"service": service, "from": frm, "to": to, "what": what, "until": now + CLAIM_LEASE}
