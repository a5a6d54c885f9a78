"""RedisCheckpoint: checkpoints in a Redis hash (the ``redis`` extra).

``redis`` is imported when a :class:`RedisCheckpoint` is made, never by
``import spotgrace``. Public names are re-exported by :mod:`spotgrace.checkpoint`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Self

from ._base import SyncCheckpointStore, check_key, decode, encode

if TYPE_CHECKING:
    import redis

__all__ = ["RedisCheckpoint"]


class RedisCheckpoint(SyncCheckpointStore):
    """Checkpoints in Redis: for Fargate, where local disk dies with the task.

    All checkpoints of a store live in one Redis hash at ``key``, one field per
    checkpoint key. A save is one ``MULTI``/``EXEC`` transaction (``HSET``,
    plus ``PEXPIRE`` when ``ttl`` is given), so it is applied whole or not at
    all, whatever happens to this process. With ``ttl`` (seconds) the hash
    expires that long after its last save: finished or abandoned jobs clean up
    after themselves.

    ``timeout`` bounds connecting and every command (seconds): a save from a
    shutdown hook must not hang past the budget on a dead network. Pass
    ``client`` to reuse an existing ``redis.Redis`` (``url`` and ``timeout``
    are then unused, and :meth:`close` leaves it open). Use it as a context
    manager, or call :meth:`close`, to close the connections it made.

    Durability is Redis's: with a single server and no AOF/replication a
    server crash can lose recent saves.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        key: str = "spotgrace:checkpoints",
        *,
        ttl: float | None = None,
        timeout: float = 5.0,
        client: redis.Redis | None = None,
    ) -> None:
        """Connect lazily to ``url``; nothing is sent to Redis yet."""
        check_key(key)
        if ttl is not None and not (
            isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0
        ):
            raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._key = key
        self._ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
        self._owns_client = client is None
        if client is None:
            try:
                import redis
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(
                    "RedisCheckpoint needs the redis package: pip install 'spotgrace[redis]'"
                ) from exc
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self._client = client

    @property
    def key(self) -> str:
        """The Redis key of the hash that holds this store's checkpoints."""
        return self._key

    def __repr__(self) -> str:
        return f"RedisCheckpoint(key={self._key!r})"

    def load(self, key: str) -> Any:
        """The value saved under ``key``, or ``None``."""
        check_key(key)
        raw = self._client.hget(self._key, key)
        if raw is None:
            return None
        data = raw.encode() if isinstance(raw, str) else raw
        return decode(data, f"redis {self._key}[{key}]")

    def save(self, key: str, value: object) -> None:
        """Atomically set ``key``'s value (and refresh the TTL)."""
        check_key(key)
        data = encode(value)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, key, data)
            if self._ttl_ms is not None:
                pipe.pexpire(self._key, self._ttl_ms)
            pipe.execute()

    def clear(self, key: str) -> None:
        """Forget ``key``."""
        check_key(key)
        self._client.hdel(self._key, key)

    def close(self) -> None:
        """Close the connection pool, if this store made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        """``with RedisCheckpoint(...) as store:`` closes it at the end."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
