"""Retries with exponential backoff and full jitter, and the error classification.

``call_aws(policy, "UpdateService", client.update_service, cluster=..., ...)``
makes the call; on throttling or a transient error it sleeps
``uniform(0, min(max_delay, base_delay * 2**attempt))`` ("full jitter") and
tries again, up to ``max_attempts`` calls; any other ``ClientError``
(AccessDenied, validation, a missing service) raises
:class:`AwsPermanentError` at once. botocore's own retries are switched off
in the clients (see ``_aws.py``) so that this is the only retry loop.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from spotgrace import ConfigError

from ._errors import AwsPermanentError, AwsRetriesExhausted

__all__ = ["THROTTLING_CODES", "TRANSIENT_CODES", "RetryPolicy", "call_aws", "is_retryable"]

T = TypeVar("T")

#: Error codes AWS uses for throttling (ECS, SNS, SQS, DynamoDB, EventBridge).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",  # SNS (HTTP 429)
        "ThrottledException",
        "KMSThrottling",  # SNS publishing to a KMS-encrypted topic
        "KmsThrottled",  # SQS sending to a KMS-encrypted queue
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)

#: Error codes for failures on AWS's side that a later attempt may not meet.
TRANSIENT_CODES = frozenset(
    {
        "ServerException",  # ECS
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)

#: botocore's own transient classes (connection refused/reset/closed, timeouts, TLS).
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError)


def _check_float(name: str, value: float, low: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < low:
        raise ConfigError(f"{name} must be a number >= {low}, got {value!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry throttled and transient AWS calls.

    ``max_attempts`` counts calls (1 = no retry). The sleep before retry
    ``n`` (from 0) is ``uniform(0, min(max_delay, base_delay * 2**n))``.
    ``deadline`` (a ``clock()`` value; the Lambda handler sets it from the
    invocation's remaining time) ends the retries early: no attempt starts
    after it and no sleep runs past it, so the handler still has time to
    dead-letter the event before Lambda's timeout. ``sleep``, ``rng`` and
    ``clock`` are injectable for tests.
    """

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    deadline: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        _check_float("base_delay", self.base_delay, 0.0)
        _check_float("max_delay", self.max_delay, 0.0)

    def delay(self, attempt: int) -> float:
        """The full-jitter sleep before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return self.rng.uniform(0.0, ceiling)


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` ("" when the response has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is throttling or a transient failure worth another attempt."""
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in THROTTLING_CODES or code in TRANSIENT_CODES:
            return True
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return isinstance(status, int) and (status == 429 or status >= 500)
    return False


def call_aws(
    policy: RetryPolicy,
    operation: str,
    fn: Callable[..., T],
    /,
    *,
    expected: Collection[str] = (),
    on_retry: Callable[[int, float, str], None] | None = None,
    **kwargs: Any,
) -> T:
    """Call ``fn(**kwargs)`` with retries; see the module docstring.

    A ``ClientError`` whose code is in ``expected`` (e.g.
    ``ConditionalCheckFailedException``) is re-raised unchanged for the caller
    to handle. ``on_retry(attempt, delay, code)`` is told about each retry.
    """
    last_code = ""
    last_message = ""
    for attempt in range(policy.max_attempts):
        if policy.deadline is not None and policy.clock() >= policy.deadline:
            raise AwsRetriesExhausted(
                operation, last_code or "Deadline", f"{last_message} (out of time: not attempted)"
            )
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code in expected:
                raise
            if not is_retryable(exc):
                message = str(exc.response.get("Error", {}).get("Message", exc))
                raise AwsPermanentError(operation, code or "ClientError", message) from exc
            last_code, last_message = code, str(exc)
            failure: BaseException = exc
        except _NETWORK_ERRORS as exc:
            last_code, last_message = type(exc).__name__, str(exc)
            failure = exc
        if attempt + 1 >= policy.max_attempts:
            raise AwsRetriesExhausted(
                operation, last_code, f"{last_message} (after {policy.max_attempts} attempts)"
            ) from failure
        pause = policy.delay(attempt)
        if policy.deadline is not None and policy.clock() + pause >= policy.deadline:
            raise AwsRetriesExhausted(
                operation, last_code, f"{last_message} (after {attempt + 1} attempts: out of time)"
            ) from failure
        if on_retry is not None:
            on_retry(attempt + 1, pause, last_code)
        policy.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
