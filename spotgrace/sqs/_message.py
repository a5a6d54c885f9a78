"""The message a handler gets, and :class:`PutBack`, the hand-off a handler raises.

Public names are re-exported by :mod:`spotgrace.sqs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spotgrace import SpotgraceError, StateError

if TYPE_CHECKING:
    from spotgrace import Grace
    from spotgrace.checkpoint import CheckpointStore

__all__ = ["Message", "PutBack"]


class PutBack(SpotgraceError):
    """Raise from a handler to give the message back at once (visibility 0).

    For a long message at shutdown: save progress with
    :meth:`Message.save_checkpoint`, then ``raise PutBack()``; the next worker
    that receives it resumes from :meth:`Message.load_checkpoint`. It is not a
    failure: the message is neither deleted nor counted as failed.
    """


class Message:
    """One received SQS message, as the handler sees it."""

    __slots__ = (
        "_checkpoint_key",
        "_grace",
        "_store",
        "attributes",
        "body",
        "message_attributes",
        "message_id",
        "raw",
        "receipt_handle",
    )

    def __init__(
        self,
        raw: Mapping[str, Any],
        *,
        grace: Grace | None = None,
        store: CheckpointStore | None = None,
        checkpoint_prefix: str = "sqs",
    ) -> None:
        #: The message as ``ReceiveMessage`` returned it.
        self.raw: Mapping[str, Any] = raw
        #: Stable across redeliveries: key idempotent effects and checkpoints by it.
        self.message_id: str = str(raw["MessageId"])
        #: Changes on every receive; used for delete and visibility calls.
        self.receipt_handle: str = str(raw["ReceiptHandle"])
        self.body: str = str(raw.get("Body", ""))
        #: System attributes (``ApproximateReceiveCount``, ``SentTimestamp``...).
        self.attributes: Mapping[str, str] = dict(raw.get("Attributes") or {})
        self.message_attributes: Mapping[str, Any] = dict(raw.get("MessageAttributes") or {})
        self._grace = grace
        self._store = store
        self._checkpoint_key = f"{checkpoint_prefix}:{self.message_id}"

    def __repr__(self) -> str:
        return f"<Message {self.message_id} receive #{self.receive_count}>"

    @property
    def receive_count(self) -> int:
        """``ApproximateReceiveCount``: 1 on the first delivery (0 if SQS did not say)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "0"))
        except ValueError:
            return 0

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down: a long handler should hand off."""
        return self._grace is not None and self._grace.stopping

    def remaining(self) -> float:
        """Seconds left before the shutdown deadline (the whole budget before a notice)."""
        if self._grace is None:
            return float("inf")
        return self._grace.remaining()

    def _need_store(self) -> CheckpointStore:
        if self._store is None:
            raise StateError("no checkpoint store: pass checkpoint=... to SQSConsumer")
        return self._store

    def load_checkpoint(self) -> Any:
        """The progress a previous delivery saved for this message, or None."""
        return self._need_store().load(self._checkpoint_key)

    def save_checkpoint(self, value: object) -> None:
        """Save progress (JSON) for this message; cleared when the message is deleted."""
        self._need_store().save(self._checkpoint_key, value)

    def clear_checkpoint(self) -> None:
        """Forget the saved progress (done for you after a successful handler)."""
        if self._store is not None:
            self._store.clear(self._checkpoint_key)
