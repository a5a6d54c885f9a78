"""Keeping held messages invisible (the heartbeat) and giving them back (visibility 0).

The two never race: a put-back waits for a heartbeat call in progress (briefly,
and never past the deadline), and if it had to go first, says it again once
that call is over, so a late "keep invisible" cannot undo a "visible now".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog

import spotgrace

from ._calls import SQSCalls
from ._ledger import Held, Ledger
from ._message import Message
from ._settings import ConsumerSettings

__all__ = ["Keeper"]

#: How long a put-back waits for a heartbeat call in progress before going first.
_HEARTBEAT_LOCK_WAIT = 2.0

_log = structlog.get_logger("spotgrace.sqs")


class Keeper:
    """The heartbeat and the put-back of one consumer."""

    def __init__(
        self,
        calls: SQSCalls,
        ledger: Ledger,
        settings: ConsumerSettings,
        grace: spotgrace.Grace,
        count: Callable[[str, int], None],
    ) -> None:
        self.calls = calls
        self.ledger = ledger
        self.settings = settings
        self.grace = grace
        self.count = count
        #: Set by the shutdown hook: no heartbeat starts after it.
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _left(self, default: float) -> float:
        return self.grace.remaining() if self.grace.stopping else default

    def set_visibility(self, messages: Sequence[Message], seconds: int, *, why: str) -> None:
        """Change visibility, never racing a heartbeat (see the module's docstring)."""
        got = self._lock.acquire(timeout=min(_HEARTBEAT_LOCK_WAIT, self._left(float("inf")) / 4))
        try:
            self.calls.set_visibility(messages, seconds, why=why)
        finally:
            if got:
                self._lock.release()
        if got:
            return
        # A slow heartbeat call was in progress: ours went first so as not to miss the
        # deadline, but the heartbeat's may land after it. Say it again once that is over.
        if self._lock.acquire(timeout=max(0.0, self._left(30.0) - 0.5)):
            try:
                self.calls.set_visibility(messages, seconds, why=why + " (after a slow heartbeat)")
            finally:
                self._lock.release()

    def put_back(self, items: Sequence[Held], *, why: str) -> None:
        """Visibility 0: redelivered at once, to any worker; never a message no longer ours."""
        now = time.monotonic()
        lost = [h for h in items if h.expired(now)]
        if lost:
            # Another worker may hold it now: making it visible would hand it to a third.
            _log.warning(
                "sqs.not_put_back",
                why=why,
                message_ids=[h.message.message_id for h in lost],
                hint="its visibility timeout ran out while held (heartbeat failed?)",
            )
        messages = [h.message for h in items if not h.expired(now)]
        if not messages:
            return
        self.set_visibility(messages, 0, why=why)
        self.count("put_back", len(messages))
        _log.info("sqs.put_back", why=why, message_ids=[m.message_id for m in messages])

    def heartbeat(self) -> None:
        """The heartbeat thread: every ``heartbeat_every`` s, extend every message held."""
        s = self.settings
        while not self.stop.wait(s.heartbeat_every):
            with self._lock:
                if self.stop.is_set():
                    return
                self._beat(s)

    def _beat(self, s: ConsumerSettings) -> None:
        now = time.monotonic()
        for h in self.ledger.expire(now):
            _log.warning(
                "sqs.visibility_lost",
                message_id=h.message.message_id,
                status=h.status.value,
                hint="its visibility timeout ran out (heartbeat failed?): another "
                "worker may have it; this one will neither start it nor give it back",
            )
        live = self.ledger.live()
        if not live:
            return
        failed = self.calls.set_visibility(
            [h.message for h in live],
            s.visibility_timeout,
            why="heartbeat",
            still_held=self.ledger.holds,
        )
        gone = {id(m) for m in failed}
        ok = [h for h in live if id(h.message) not in gone]
        self.ledger.renew(ok, now, time.monotonic(), s.visibility_timeout)
        self.count("heartbeats", 1)
