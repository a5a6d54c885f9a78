"""Where the companion keeps its state: one DynamoDB table (or memory, for dry runs).

Why DynamoDB: EventBridge may deliver an event more than once and Lambda may
run two invocations at the same time; conditional writes make "first one
wins" exact, which service tags (no compare-and-set) cannot. The table has
one string key ``pk`` and a TTL attribute ``expires_at``. Items:

- ``event#<event id>`` and ``task#<task ARN>``: claims. A claim is written
  ``pending`` with a lease before acting and marked ``done`` after; a failed
  attempt deletes it so a retry acts again; a crashed one is taken over once
  its lease is over. ``done`` claims expire after a week.
- ``service#<cluster>/<service>``: what must be undone later (a scale-out's
  baseline and target, a fallback's twin counts) as JSON in ``data``, with a
  ``version`` for optimistic locking.

The IAM policy needs only GetItem, PutItem, UpdateItem and DeleteItem on
that table.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from ._retry import RetryPolicy, call_aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from ._config import ServiceRef

__all__ = ["Claim", "DryRunStore", "DynamoStore", "MemoryStore", "StateStore"]

CLAIM_LEASE = 300.0
DONE_TTL = 7 * 24 * 3600.0
_CONFLICT = "ConditionalCheckFailedException"


class Claim(enum.Enum):
    """The outcome of claiming a key."""

    NEW = "new"  # ours: act, then complete() or release()
    DONE = "done"  # acted on before: a duplicate
    BUSY = "busy"  # another invocation holds a live lease: a concurrent duplicate


class StateStore(Protocol):
    """Claims and per-service records (see the module docstring)."""

    def claim(self, key: str, now: float) -> Claim: ...
    def complete(self, key: str, now: float) -> None: ...
    def release(self, key: str) -> None: ...
    def get_record(self, ref: ServiceRef) -> tuple[dict[str, Any], int]: ...
    def put_record(self, ref: ServiceRef, data: dict[str, Any], version: int) -> bool: ...


class MemoryStore:
    """A StateStore in memory: for dry runs and tests of one invocation. Not shared
    between invocations, so it cannot de-duplicate replays across them."""

    def __init__(self) -> None:
        self.claims: dict[str, tuple[str, float]] = {}
        self.records: dict[str, tuple[dict[str, Any], int]] = {}

    def claim(self, key: str, now: float) -> Claim:
        held = self.claims.get(key)
        if held is not None:
            status, until = held
            if status == "done":
                return Claim.DONE
            if until > now:
                return Claim.BUSY
        self.claims[key] = ("pending", now + CLAIM_LEASE)
        return Claim.NEW

    def complete(self, key: str, now: float) -> None:
        self.claims[key] = ("done", now + DONE_TTL)

    def release(self, key: str) -> None:
        self.claims.pop(key, None)

    def get_record(self, ref: ServiceRef) -> tuple[dict[str, Any], int]:
        data, version = self.records.get(f"service#{ref}", ({}, 0))
        return json.loads(json.dumps(data)), version

    def put_record(self, ref: ServiceRef, data: dict[str, Any], version: int) -> bool:
        if self.records.get(f"service#{ref}", ({}, 0))[1] != version:
            return False
        self.records[f"service#{ref}"] = (json.loads(json.dumps(data)), version + 1)
        return True


class DynamoStore:
    """A StateStore in a DynamoDB table, every call retried per ``retry``."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        retry: RetryPolicy,
        *,
        log_retry: Callable[[str], Callable[[int, float, str], None]] | None = None,
    ) -> None:
        self._db = client
        self._table = table
        self._retry = retry
        self._log_retry = log_retry

    def _call(self, op: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        return call_aws(
            self._retry,
            op,
            fn,
            expected=(_CONFLICT,),
            on_retry=self._log_retry(op) if self._log_retry else None,
            TableName=self._table,
            **kwargs,
        )

    def claim(self, key: str, now: float) -> Claim:
        try:
            self._call(
                "PutItem",
                self._db.put_item,
                Item={
                    "pk": {"S": key},
                    "status": {"S": "pending"},
                    "lease_until": {"N": repr(now + CLAIM_LEASE)},
                    "expires_at": {"N": str(int(now + DONE_TTL))},
                },
                ConditionExpression="attribute_not_exists(pk) OR "
                "(#s = :pending AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}, ":now": {"N": repr(now)}},
            )
            return Claim.NEW
        except ClientError:
            item = self._call(
                "GetItem", self._db.get_item, Key={"pk": {"S": key}}, ConsistentRead=True
            ).get("Item", {})
            return Claim.DONE if item.get("status", {}).get("S") == "done" else Claim.BUSY

    def peek(self, key: str, now: float) -> Claim | None:
        """What :meth:`claim` would answer, without writing (None: it would be NEW)."""
        item = self._call(
            "GetItem", self._db.get_item, Key={"pk": {"S": key}}, ConsistentRead=True
        ).get("Item", {})
        status = item.get("status", {}).get("S")
        if status == "done":
            return Claim.DONE
        if status == "pending" and float(item.get("lease_until", {}).get("N", "0")) >= now:
            return Claim.BUSY
        return None

    def complete(self, key: str, now: float) -> None:
        self._call(
            "UpdateItem",
            self._db.update_item,
            Key={"pk": {"S": key}},
            UpdateExpression="SET #s = :done, expires_at = :exp",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":done": {"S": "done"},
                ":exp": {"N": str(int(now + DONE_TTL))},
            },
        )

    def release(self, key: str) -> None:
        try:
            self._call(
                "DeleteItem",
                self._db.delete_item,
                Key={"pk": {"S": key}},
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except ClientError:
            return  # already done (or gone): nothing of ours to release

    def get_record(self, ref: ServiceRef) -> tuple[dict[str, Any], int]:
        item = self._call(
            "GetItem", self._db.get_item, Key={"pk": {"S": f"service#{ref}"}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return {}, 0
        return json.loads(item["data"]["S"]), int(item["version"]["N"])

    def put_record(self, ref: ServiceRef, data: dict[str, Any], version: int) -> bool:
        condition = "attribute_not_exists(pk)" if version == 0 else "version = :v"
        values = {} if version == 0 else {":v": {"N": str(version)}}
        try:
            self._call(
                "PutItem",
                self._db.put_item,
                Item={
                    "pk": {"S": f"service#{ref}"},
                    "data": {"S": json.dumps(data, sort_keys=True)},
                    "version": {"N": str(version + 1)},
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError:
            return False
        return True


class DryRunStore:
    """For dry runs: reads the real table, writes only to memory, so a dry run sees
    the same claims and records (and so plans the same writes) as a real run."""

    def __init__(self, table: DynamoStore) -> None:
        self._table = table
        self._memory = MemoryStore()

    def claim(self, key: str, now: float) -> Claim:
        if key not in self._memory.claims:
            seen = self._table.peek(key, now)
            if seen is not None:
                return seen
        return self._memory.claim(key, now)

    def complete(self, key: str, now: float) -> None:
        self._memory.complete(key, now)

    def release(self, key: str) -> None:
        self._memory.release(key)

    def _seed(self, ref: ServiceRef) -> None:
        if f"service#{ref}" not in self._memory.records:
            self._memory.records[f"service#{ref}"] = self._table.get_record(ref)

    def get_record(self, ref: ServiceRef) -> tuple[dict[str, Any], int]:
        self._seed(ref)
        return self._memory.get_record(ref)

    def put_record(self, ref: ServiceRef, data: dict[str, Any], version: int) -> bool:
        self._seed(ref)
        return self._memory.put_record(ref, data, version)
