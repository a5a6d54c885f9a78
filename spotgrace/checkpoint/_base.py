"""What every checkpoint store shares: the protocol, the errors, JSON encoding.

Public names are re-exported by :mod:`spotgrace.checkpoint`.
"""

from __future__ import annotations

import abc
import asyncio
import json
from typing import Any, Protocol

from .._core._errors import SpotgraceError

__all__ = [
    "CheckpointError",
    "CheckpointPathError",
    "CheckpointStore",
    "SyncCheckpointStore",
]


class CheckpointError(SpotgraceError):
    """A checkpoint could not be read back: not JSON, or not in the expected format."""


class CheckpointPathError(CheckpointError, ValueError):
    """A checkpoint file path that :class:`~spotgrace.checkpoint.FileCheckpoint` cannot make safe."""


class CheckpointStore(Protocol):
    """Where checkpoints live: JSON values under string keys, sync and async.

    ``load`` returns ``None`` when nothing is saved under ``key``. ``save``
    replaces the value atomically: a reader (or the next run, after a crash)
    sees either the old value or the new one, never a mix. ``clear`` forgets
    ``key`` (no error when it is absent). The ``a``-prefixed methods are the
    same operations for coroutines.
    """

    def load(self, key: str) -> Any:
        """The JSON value saved under ``key``, or ``None``."""

    def save(self, key: str, value: object) -> None:
        """Atomically replace the value under ``key`` with ``value`` (JSON-serialisable)."""

    def clear(self, key: str) -> None:
        """Forget ``key``."""

    async def aload(self, key: str) -> Any:
        """:meth:`load` for coroutines."""

    async def asave(self, key: str, value: object) -> None:
        """:meth:`save` for coroutines."""

    async def aclear(self, key: str) -> None:
        """:meth:`clear` for coroutines."""


class SyncCheckpointStore(abc.ABC):
    """Base for stores with blocking I/O: the async methods run the sync ones in a thread.

    Subclass it and implement :meth:`load`, :meth:`save` and :meth:`clear`.
    """

    @abc.abstractmethod
    def load(self, key: str) -> Any:
        """The JSON value saved under ``key``, or ``None``."""

    @abc.abstractmethod
    def save(self, key: str, value: object) -> None:
        """Atomically replace the value under ``key`` with ``value``."""

    @abc.abstractmethod
    def clear(self, key: str) -> None:
        """Forget ``key``."""

    async def aload(self, key: str) -> Any:
        """:meth:`load` in a worker thread."""
        return await asyncio.to_thread(self.load, key)

    async def asave(self, key: str, value: object) -> None:
        """:meth:`save` in a worker thread."""
        await asyncio.to_thread(self.save, key, value)

    async def aclear(self, key: str) -> None:
        """:meth:`clear` in a worker thread."""
        await asyncio.to_thread(self.clear, key)


def check_key(key: object) -> str:
    """``key`` if it is a non-empty string; else a clear error."""
    if not isinstance(key, str):
        raise TypeError(f"checkpoint key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("checkpoint key must not be empty")
    return key


def encode(value: object) -> bytes:
    """``value`` as compact JSON bytes; TypeError/ValueError for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def decode(data: bytes, where: str) -> Any:
    """Parse JSON ``data`` read from ``where``; :class:`CheckpointError` if it is not JSON."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise CheckpointError(f"{where}: not valid JSON ({exc})") from exc
