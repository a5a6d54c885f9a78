"""Durable progress for batch work and queue consumers.

A :class:`CheckpointStore` keeps JSON values under string keys and replaces
them atomically. Two come with spotgrace:

- :class:`FileCheckpoint` — one JSON file, replaced with temp file + ``fsync``
  + rename + ``fsync`` of the directory; for local runs and shared volumes.
- :class:`RedisCheckpoint` — a Redis hash (extra ``spotgrace[redis]``); for
  Fargate, where local disk dies with the task.

:func:`checkpointed` wraps an iterable (sync or async) so that a run resumes
where the previous one stopped, and stops taking items once shutdown starts.

Errors::

    SpotgraceError
    └── CheckpointError                   a checkpoint cannot be read back
        └── CheckpointPathError (ValueError)  a file path that cannot be made safe
"""

from __future__ import annotations

from ._base import (
    CheckpointError as CheckpointError,
)
from ._base import (
    CheckpointPathError as CheckpointPathError,
)
from ._base import (
    CheckpointStore as CheckpointStore,
)
from ._base import (
    SyncCheckpointStore as SyncCheckpointStore,
)
from ._checkpointed import Checkpointed as Checkpointed
from ._checkpointed import checkpointed as checkpointed
from ._file import FileCheckpoint as FileCheckpoint
from ._redis import RedisCheckpoint as RedisCheckpoint

__all__ = [
    "CheckpointError",
    "CheckpointPathError",
    "CheckpointStore",
    "Checkpointed",
    "FileCheckpoint",
    "RedisCheckpoint",
    "SyncCheckpointStore",
    "checkpointed",
]
