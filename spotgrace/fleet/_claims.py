"""Acting once per event: claims on the event id and the task ARN (see ``_state.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._config import ServiceRef
from ._events import FleetEvent
from ._log import JsonLog
from ._state import Claim, StateStore

__all__ = ["Once"]

Result = dict[str, Any]


class Once:
    """The claiming half of :class:`~spotgrace.fleet._actions.Companion`."""

    store: StateStore
    log: JsonLog
    clock: Callable[[], float]

    def _once(
        self, ev: FleetEvent, ref: ServiceRef, keys: list[str], act: Callable[[], Result]
    ) -> Result:
        now = self.clock()
        held: list[str] = []
        try:
            for key in keys:
                claim = self.store.claim(key, now)
                if claim is not Claim.NEW:
                    for mine in held:  # this event is handled: by whoever holds `key`
                        self.store.complete(mine, now)
                    return self._duplicate(ev, ref, key, claim)
                held.append(key)
            result = act()
        except BaseException:
            # A claim we hold (even if claiming the next key failed) must not outlive
            # this attempt, or a redrive within the lease would be taken for a duplicate.
            self._release(held)
            raise
        for key in reversed(held):
            self.store.complete(key, self.clock())
        return result

    def _release(self, held: list[str]) -> None:
        for key in reversed(held):
            try:
                self.store.release(key)
            except Exception as exc:  # logged; the error being raised is the one that counts
                self.log.error("could not release a claim", key=key, error=repr(exc))

    def _duplicate(self, ev: FleetEvent, ref: ServiceRef, key: str, claim: Claim) -> Result:
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
