"""Installing and restoring signal handlers."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ._errors import SignalInstallError, StateError

__all__ = ["Handler", "install", "restore"]

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _owner(handler: Handler) -> object:
    return getattr(handler, "__self__", None)


def install(
    signals: Iterable[signal.Signals],
    handler: Callable[[int, FrameType | None], Any],
    *,
    owner_type: type,
) -> dict[signal.Signals, Handler]:
    """Install ``handler`` for ``signals``; returns the previous handlers.

    Raises :class:`SignalInstallError` outside the main thread and
    :class:`StateError` when another ``owner_type`` instance's handler is
    installed (two ``graceful()`` blocks active at once would fight over them).
    """
    sigs = list(signals)
    if not sigs:
        return {}
    if threading.current_thread() is not threading.main_thread():
        raise SignalInstallError(
            "spotgrace.graceful() installs signal handlers, which Python allows only in the "
            f"main thread (this is {threading.current_thread().name!r}); enter it in the main "
            "thread, or pass signals=() and call request_shutdown() yourself"
        )
    previous: dict[signal.Signals, Handler] = {}
    for sig in sigs:
        current = signal.getsignal(sig)
        if isinstance(_owner(current), owner_type):
            restore(previous)
            raise StateError(
                f"another spotgrace.graceful() is already active and handles {sig.name}; "
                "use one per process"
            )
        previous[sig] = current
        signal.signal(sig, handler)
    return previous


def restore(previous: dict[signal.Signals, Handler]) -> None:
    """Put back the handlers :func:`install` replaced (SIG_DFL where there was none)."""
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)
