"""Which received messages this worker holds, and in what state.

Every message received is held until it is deleted or given back. The
states only move forward, under one lock, so that a handler finishing and the
shutdown giving its message back cannot both act on it::

    WAITING ──start──▶ RUNNING ──finish──▶ (gone: deleted, failed, put back)
       │                  │
       └──return──▶ RETURNED   └──abandon──▶ ABANDONED (handler still running)

Apart from the state, each message has a deadline: when its visibility runs
out (as far as this worker knows: from the receive, renewed by each heartbeat
that succeeded). Past it the message may be another worker's: it is *lost*
to this one, which then neither heartbeats it, nor starts it, nor gives it back.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._message import Message

__all__ = ["Held", "Ledger", "Status"]


class Status(enum.Enum):
    """Where a held message is."""

    WAITING = "waiting"  # received, not started
    RUNNING = "running"  # a handler has it
    RETURNED = "returned"  # given back (visibility 0) before it started
    ABANDONED = "abandoned"  # given back while its handler still ran


@dataclass(eq=False)
class Held:
    """One message in hand."""

    message: Message
    status: Status = Status.WAITING
    received_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    thread: str | None = None
    #: Monotonic time its visibility runs out, as far as this worker knows.
    visible_until: float = float("inf")
    #: Its visibility ran out while held: another worker may have it now.
    lost: bool = False

    def expired(self, now: float | None = None) -> bool:
        """True once the visibility may have run out: the message may be another worker's."""
        return self.lost or (time.monotonic() if now is None else now) >= self.visible_until


class Ledger:
    """The messages in hand, by receipt handle; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, Held] = {}

    def __len__(self) -> int:
        with self._cond:
            return len(self._held)

    def add(self, messages: list[Message], visible_until: float = float("inf")) -> list[Held]:
        """Hold newly received messages (WAITING), invisible to others until ``visible_until``."""
        with self._cond:
            items = [Held(m, visible_until=visible_until) for m in messages]
            for h in items:
                self._held[h.message.receipt_handle] = h
            return items

    def start(self, held: Held) -> bool:
        """WAITING → RUNNING; False if the message was given back meanwhile."""
        with self._cond:
            if held.status is not Status.WAITING or held.expired():
                return False
            held.status = Status.RUNNING
            held.started_at = time.monotonic()
            held.thread = threading.current_thread().name
            return True

    def release(self, held: Held) -> bool:
        """Forget a message its handler is done with; False if it was abandoned meanwhile."""
        with self._cond:
            self._held.pop(held.message.receipt_handle, None)
            self._cond.notify_all()
            return held.status is Status.RUNNING

    def give_back(self, which: Status) -> list[Held]:
        """Mark every WAITING (→ RETURNED) or RUNNING (→ ABANDONED) message; forget them."""
        new = Status.RETURNED if which is Status.WAITING else Status.ABANDONED
        with self._cond:
            taken = [h for h in self._held.values() if h.status is which]
            for h in taken:
                h.status = new
                del self._held[h.message.receipt_handle]
            self._cond.notify_all()
            return taken

    def give_back_one(self, held: Held) -> bool:
        """WAITING → RETURNED for one message; False if a handler took it first."""
        with self._cond:
            if held.status is not Status.WAITING:
                return False
            held.status = Status.RETURNED
            self._held.pop(held.message.receipt_handle, None)
            self._cond.notify_all()
            return True

    def live(self) -> list[Held]:
        """Messages whose visibility must be kept up: WAITING and RUNNING, not lost."""
        with self._cond:
            return [h for h in self._held.values() if not h.lost]

    def expire(self, now: float) -> list[Held]:
        """Mark lost every held message whose visibility ran out by ``now``; those newly lost."""
        with self._cond:
            gone = [h for h in self._held.values() if not h.lost and now >= h.visible_until]
            for h in gone:
                h.lost = True
            return gone

    def renew(self, items: list[Held], sent: float, done: float, timeout: int) -> None:
        """A heartbeat call sent at ``sent`` succeeded at ``done`` for ``items``.

        It counts only for a message whose visibility had not run out by ``done``: a
        call that lands late may have come after SQS gave the message to another
        worker (which SQS, or moto, may not refuse), so such a message stays due
        to be found lost.
        """
        with self._cond:
            for h in items:
                if not h.lost and done < h.visible_until:
                    h.visible_until = max(h.visible_until, sent + timeout)

    def holds(self, message: Message) -> bool:
        """True while ``message`` (this delivery of it) is held."""
        with self._cond:
            return self._held.get(message.receipt_handle) is not None

    def wait_room(self, limit: int, stop: Callable[[], bool]) -> int:
        """Block until fewer than ``limit`` are held (or ``stop()``); the room there is."""
        with self._cond:
            while len(self._held) >= limit and not stop():
                self._cond.wait()
            return max(0, limit - len(self._held))

    def wake(self) -> None:
        """Wake :meth:`wait_room` (shutdown began)."""
        with self._cond:
            self._cond.notify_all()
