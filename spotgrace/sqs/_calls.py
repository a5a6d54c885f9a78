"""The SQS calls the consumer makes, through boto3, with errors turned into log events.

Two clients by default: one for the long poll (its read timeout must outlast
``WaitTimeSeconds``) and one for the short calls (visibility, delete), with a
short timeout and few retries, so a slow endpoint cannot hold the shutdown's
put-back past the deadline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ._message import Message

__all__ = ["SQSCalls", "make_clients"]

#: What a failed call raises; logged, never fatal to the loop.
CALL_ERRORS = (BotoCoreError, ClientError)

_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
    "MessageGroupId",
]

_log = structlog.get_logger("spotgrace.sqs")


def make_clients(wait_time: int, pool: int, region: str | None) -> tuple[Any, Any]:
    """(poll client, control client); endpoint and credentials the usual boto3 way."""
    session = boto3.session.Session()
    poll = session.client(
        "sqs",
        region_name=region,
        config=Config(
            connect_timeout=3,
            read_timeout=wait_time + 10,  # AWS: the HTTP timeout must outlast WaitTimeSeconds
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=2,
        ),
    )
    control = session.client(
        "sqs",
        region_name=region,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, pool),
        ),
    )
    return poll, control


def system_attributes_param(members: Iterable[str]) -> str:
    """The ``ReceiveMessage`` parameter that asks for system attributes.

    ``MessageSystemAttributeNames`` since botocore 1.34.6x; before it (boto3 1.34.0,
    which the extra allows), only the now deprecated ``AttributeNames``, and
    the newer name fails validation on every receive.
    """
    new = "MessageSystemAttributeNames"
    return new if new in members else "AttributeNames"


def _chunks(items: Sequence[Message], size: int = 10) -> Iterable[Sequence[Message]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class SQSCalls:
    """Receive, delete, change visibility and dead-letter, for one queue."""

    def __init__(self, queue_url: str, poll: Any, control: Any) -> None:
        self.queue_url = queue_url
        self.poll = poll
        self.control = control
        receive = poll.meta.service_model.operation_model("ReceiveMessage")
        self._attrs_param = system_attributes_param(receive.input_shape.members)

    def receive(self, count: int, wait: int, visibility: int) -> list[dict[str, Any]]:
        """One ``ReceiveMessage``: up to ``count`` messages, waiting up to ``wait`` s."""
        reply = self.poll.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            **{self._attrs_param: _ATTRIBUTES},
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = reply.get("Messages", [])
        return messages

    def delete(self, message: Message) -> bool:
        """Delete after success; False (logged) if SQS refused or could not be reached."""
        try:
            self.control.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle
            )
        except CALL_ERRORS as exc:
            _log.error("sqs.delete_failed", message_id=message.message_id, error=repr(exc))
            return False
        return True

    def set_visibility(
        self,
        messages: Sequence[Message],
        seconds: int,
        *,
        why: str,
        still_held: Callable[[Message], bool] | None = None,
    ) -> list[Message]:
        """``ChangeMessageVisibilityBatch`` in chunks of 10; returns the messages it failed for.

        ``still_held``: a message it says False for (deleted or given back while the
        call was on its way, as when a heartbeat races a delete) fails quietly.
        """
        failed: list[Message] = []
        for chunk in _chunks(messages):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                for i, m in enumerate(chunk)
            ]
            try:
                reply = self.control.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except CALL_ERRORS as exc:
                _log.error(
                    "sqs.visibility_failed",
                    why=why,
                    message_ids=[m.message_id for m in chunk],
                    error=repr(exc),
                )
                failed.extend(chunk)
                continue
            for err in reply.get("Failed", []):
                m = chunk[int(err["Id"])]
                failed.append(m)
                if still_held is not None and not still_held(m):
                    continue
                _log.error(
                    "sqs.visibility_failed",
                    why=why,
                    message_ids=[m.message_id],
                    error=f"{err.get('Code')}: {err.get('Message')}",
                )
        return failed

    def dead_letter(self, message: Message, dlq_url: str) -> bool:
        """Copy the message to the dead-letter queue, then delete it; False if either failed."""
        attrs = {
            k: {kk: vv for kk, vv in v.items() if kk in ("DataType", "StringValue", "BinaryValue")}
            for k, v in message.message_attributes.items()
        }
        extra: dict[str, Any] = {"MessageAttributes": attrs} if attrs else {}
        with contextlib.suppress(KeyError):
            # FIFO dead-letter queues need a group (and dedup) id.
            extra["MessageGroupId"] = message.attributes["MessageGroupId"]
            extra["MessageDeduplicationId"] = message.message_id
        try:
            self.control.send_message(QueueUrl=dlq_url, MessageBody=message.body, **extra)
        except CALL_ERRORS as exc:
            _log.error("sqs.dead_letter_failed", message_id=message.message_id, error=repr(exc))
            return False
        return self.delete(message)
