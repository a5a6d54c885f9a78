"""The errors of ``spotgrace.fleet``.

The tree (under spotgrace's root, ``spotgrace.SpotgraceError``)::

    SpotgraceError
    ├── ConfigError (ValueError)      a bad SPOTGRACE_FLEET_* variable or service tag
    └── FleetError                    an AWS call of the companion failed
        ├── AwsPermanentError         permission or validation error: not retried, fails at once
        └── AwsRetriesExhausted       throttling/transient errors outlasted the retry budget

Every one of them propagates out of the Lambda handler (after the event was
sent to the dead-letter queue): nothing is swallowed.
"""

from __future__ import annotations

from spotgrace import SpotgraceError

__all__ = ["AwsPermanentError", "AwsRetriesExhausted", "FleetError"]


class FleetError(SpotgraceError):
    """An AWS call made by the fleet companion failed."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code


class AwsPermanentError(FleetError):
    """AWS refused the call (permission, validation, missing resource); retrying cannot help."""


class AwsRetriesExhausted(FleetError):
    """Throttling or transient errors went on past the last attempt."""
