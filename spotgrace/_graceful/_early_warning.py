"""The glue between ``graceful(watch=...)`` and :mod:`spotgrace.watch`.

Imports httpx (through :mod:`spotgrace.watch`) only when a watch is asked
for, so that ``import spotgrace`` stays free of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core._config import Options
from .._core._errors import ConfigError

if TYPE_CHECKING:
    from ..watch._watcher import Watcher

__all__ = ["RequestShutdown", "make_watcher"]

RequestShutdown = Callable[..., None]


def make_watcher(options: Options, request_shutdown: RequestShutdown) -> Watcher | None:
    """The watcher for ``options.watch`` (not started), or None when there is nothing to watch.

    Raises :class:`ConfigError` when the ``watch`` extra is missing or a
    source's address is refused.
    """
    if not options.watch:
        return None
    try:
        from ..watch import Watcher, WatchNotice, sources_from_spec
    except ImportError as exc:
        raise ConfigError(
            f"watch={list(options.watch)!r} needs the watch extra: "
            f"pip install 'spotgrace[watch]' ({exc})"
        ) from None
    sources = sources_from_spec(options.watch)
    if not sources:
        return None

    def on_notice(notice: WatchNotice) -> None:
        request_shutdown(notice.reason, source="watch", within=notice.within())

    return Watcher(sources, on_notice=on_notice, interval=options.watch_interval)
