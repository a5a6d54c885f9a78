"""Installing and restoring signal handlers, and the wake-up channel.

A Python-level signal handler runs only when the main thread next runs Python
code: not while it waits in a C call that retries on ``EINTR`` (a sqlite lock
wait, a C extension's loop). The C-level handler, though, runs at once in
whatever thread the kernel picked, and writes the signal number to the
*wake-up fd* (:func:`signal.set_wakeup_fd`) without the GIL. The coordinator's
thread reads that fd: the notice, readiness and the deadline need no main
thread. :class:`WakeupChannel` chains to a wake-up fd installed before it (an
asyncio loop's, whose ``add_signal_handler`` uses one) by passing every byte
on, and notices when something installed its own after it: then the
Python-level handler does the work, as before. With a sentinel process
(:mod:`._sentinel`) two read the pipe: the sentinel passes the bytes it gets
on through its relay pipe (:attr:`WakeupChannel.listen_fd`), and the thread
reads both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ._errors import SignalInstallError, StateError

__all__ = ["Handler", "WakeupChannel", "install", "restore"]

#: The sentinel's arrival frame marker (``_sentinel_main.ARRIVAL``; that module
#: is a script of its own and imports nothing of spotgrace).
ARRIVAL = b"\xfe"

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


class WakeupChannel:
    """A non-blocking pipe: signal numbers from the C handler, and wake-ups (byte 0)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.previous = -1  # the wake-up fd we replaced; each byte is passed on to it
        self.installed = False
        self.displaced = False  # another wake-up fd replaced ours after us
        #: What the coordinator's thread reads: ``read_fd``, or a sentinel's relay pipe.
        self.listen_fd = self.read_fd
        #: Set when the relay pipe ended (the sentinel died): ``read_fd`` is read again.
        self.relay_lost = False
        #: When the sentinel read the signal that started its deadline
        #: (``time.monotonic()``), until :meth:`take_arrival`; None if unknown.
        self.arrival: float | None = None

    def take_arrival(self) -> float | None:
        """The last :attr:`arrival` the sentinel relayed, once."""
        arrival, self.arrival = self.arrival, None
        return arrival

    def relay_through(self, fd: int) -> None:
        """Read also ``fd``, where a sentinel copies the bytes it reads, from now on."""
        self.listen_fd = fd

    def listen_fds(self) -> list[int]:
        """The descriptors the coordinator's thread waits on."""
        if self.listen_fd != self.read_fd:
            return [self.listen_fd, self.read_fd]
        return [self.read_fd]

    def install(self) -> None:
        """Make our pipe the process's wake-up fd (main thread only)."""
        self.previous = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.installed = True

    def still_ours(self) -> bool:
        """Whether our pipe is still the wake-up fd (main thread only; a signal handler).

        Swapping in the same descriptor is atomic; if another one was there, it
        is put back at once and the channel counts as displaced.
        """
        if not self.installed:
            return False
        current = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        if current == self.write_fd:
            return True
        signal.set_wakeup_fd(current, warn_on_full_buffer=False)
        self.displaced = True
        return False

    def uninstall(self) -> None:
        """Put the previous wake-up fd back, unless someone replaced ours meanwhile."""
        if not self.installed:
            return
        self.installed = False
        with contextlib.suppress(ValueError):  # not the main thread (a forked child's)
            current = signal.set_wakeup_fd(self.previous, warn_on_full_buffer=False)
            if current != self.write_fd:
                signal.set_wakeup_fd(current, warn_on_full_buffer=False)

    def wake(self) -> None:
        """Wake the reader (from any thread); never blocks."""
        with contextlib.suppress(OSError):
            os.write(self.write_fd, b"\0")

    def read(self) -> bytes:
        """Everything waiting in the pipes (may be empty); passes signal bytes on.

        With a sentinel, both its relay and the wake-up pipe itself are read:
        each byte reaches one of the two readers, and a sentinel that is still
        starting, stopped or dead holds nothing back.
        """
        relayed = b""
        if self.listen_fd != self.read_fd:
            relayed, ended = _drain(self.listen_fd)
            if ended:  # the sentinel is gone: the wake-up pipe alone from now on
                with contextlib.suppress(OSError):
                    os.close(self.listen_fd)
                self.listen_fd = self.read_fd
                self.relay_lost = True
        got = self._frames(relayed) + _drain(self.read_fd)[0]
        signals = got.replace(b"\0", b"")
        if signals and self.previous >= 0:
            with contextlib.suppress(OSError):
                os.write(self.previous, signals)
        return got

    def _frames(self, got: bytes) -> bytes:
        """Take the sentinel's arrival frames out of ``got`` (see ``_sentinel_main.ARRIVAL``).

        The sentinel writes each frame with the bytes after it in one write of
        at most PIPE_BUF: a frame is never split between reads.
        """
        while (at := got.find(ARRIVAL)) >= 0:
            self.arrival = int.from_bytes(got[at + 1 : at + 9], "little") / 1e9
            got = got[:at] + got[at + 9 :]
        return got

    def close(self) -> None:
        """Close both ends."""
        fds = {self.read_fd, self.write_fd, self.listen_fd}
        for fd in fds - {-1}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.read_fd = self.write_fd = self.listen_fd = -1


def _drain(fd: int) -> tuple[bytes, bool]:
    """What is waiting in ``fd`` (non-blocking), and whether it has ended."""
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # empty (BlockingIOError), interrupted or closed
            return b"".join(chunks), False
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
