"""Public type aliases for spotgrace's extension points."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Clock", "HookFunction"]

#: A cleanup hook: a sync or async callable taking no arguments.
HookFunction = Callable[[], None] | Callable[[], Awaitable[None]]

#: A monotonic clock in seconds, e.g. :func:`time.monotonic` (the default).
Clock = Callable[[], float]
