"""The coordinator's notice thread: signals from the wake-up fd, the lame duck, the kick.

A mixin of :class:`~._coordinator.Coordinator`, kept apart so that each file
stays small. See the coordinator's module docstring for the design.
"""

from __future__ import annotations

import queue
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from ._errors import ShutdownInterrupt

if TYPE_CHECKING:
    from ._config import Options
    from ._flag import Flag
    from ._inflight import InflightTracker
    from ._signals import WakeupChannel

__all__ = ["KICK_EVERY", "NoticeLoop"]

#: With ``interrupt=True``, the kick is repeated this often until the main
#: thread has left the body: one signal can land just before a blocking call
#: starts, and is then not seen until the call returns.
KICK_EVERY = 0.05

#: Code names in ``spotgrace._graceful._graceful`` that mean "the body has
#: ended": a kick seen there must not raise.
_EXIT_FRAMES = frozenset({"__exit__", "__aexit__", "_close_begin", "_close_end", "_release"})
_GRACEFUL_MODULE = "spotgrace._graceful._graceful"


class NoticeLoop:
    """Signal handling and the notice thread's loop (mixed into the coordinator)."""

    options: Options
    tracker: InflightTracker
    stopping: Flag
    ready: bool
    #: Closed (``open = False``) the moment readiness turns red: see ``Coordinator.on_notice``.
    notice_gates: list[Any]
    body_running: bool
    forked: bool
    _wakeup: WakeupChannel | None
    _queue: queue.SimpleQueue[tuple[Any, ...]]
    _stop_at: float | None
    _kick_pending: bool
    _kick_signal: signal.Signals | None
    _kicks_unmatched: int
    _next_kick: float

    def set_stopping(self) -> None:  # pragma: no cover - the coordinator's
        raise NotImplementedError

    def _on_signal(self, sig: signal.Signals) -> None:  # pragma: no cover - the coordinator's
        raise NotImplementedError

    def _not_a_notice(self) -> None:  # pragma: no cover - the coordinator's
        raise NotImplementedError

    def _relay_lost(self) -> None:  # pragma: no cover - the coordinator's
        raise NotImplementedError

    def turn_red(self) -> None:
        """Readiness red, the notice gates closed first. Plain stores: safe in a signal handler."""
        for gate in self.notice_gates:
            gate.open = False
        self.ready = False

    def handle_signal(self, signum: int, frame: object) -> None:
        """The Python-level signal handler: raise the interrupt, or hand off if needed.

        While our wake-up fd is in place and this handler is the one installed,
        the coordinator's thread has the signal already (from the fd) and this
        does nothing more.
        """
        if self.forked:
            return
        if self._kick_pending and signum == self._kick_signal:
            self._kick_pending = False
            if self.body_running and not _in_exit(frame):
                if self.tracker.main_depth > 0:
                    self.tracker.interrupt_pending = True
                else:
                    raise ShutdownInterrupt("intake stopped")
            return
        self.turn_red()
        channel = self._wakeup
        if (
            channel is not None
            and signal.getsignal(signum) == self.handle_signal
            and channel.still_ours()
        ):
            return
        self._queue.put_nowait(("signal", signum))
        if channel is not None:
            channel.wake()

    def _kick(self) -> None:
        """Signal the main thread so that the handler raises the interrupt there."""
        kick = self._kick_signal
        self._next_kick = time.monotonic() + KICK_EVERY
        if kick is None or signal.getsignal(kick) != self.handle_signal:
            return  # someone else handles it now: a kick would be their signal
        main = threading.main_thread()
        if _pending_in_thread(main.native_id, kick):
            # The last kick is not delivered yet (the main thread blocks the
            # signal, or is not scheduled): another would merge with it and
            # write no wake-up byte, and the count would then swallow a real
            # signal (a Ctrl-C meant to escalate).
            return
        self._kicks_unmatched += 1  # its wake-up byte is ours, not a signal
        try:
            signal.pthread_kill(main.ident or 0, kick)
        except (ProcessLookupError, OSError):
            self._kicks_unmatched -= 1

    def _serve(self) -> None:
        """The notice thread: signals, lame-duck timing, interrupt kicks, escalation."""
        channel = self._wakeup
        assert channel is not None
        try:
            while True:
                timeout = None
                if self._stop_at is not None and not self.stopping.is_set():
                    timeout = max(0.0, self._stop_at - time.monotonic())
                kicking = self._kick_pending and self.body_running
                if kicking:
                    wait = max(0.0, self._next_kick - time.monotonic())
                    timeout = wait if timeout is None else min(timeout, wait)
                ready, _, _ = select.select(channel.listen_fds(), [], [], timeout)
                if ready:
                    lost = channel.relay_lost
                    for byte in channel.read():
                        if byte:
                            self._from_wakeup_fd(byte)
                    if channel.relay_lost and not lost:
                        self._relay_lost()
                while True:
                    try:
                        msg = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if msg[0] == "close":
                        return
                    if msg[0] == "signal":
                        self._on_signal(signal.Signals(msg[1]))
                if self.forked:
                    return
                now = time.monotonic()
                stop_at = self._stop_at
                if stop_at is not None and not self.stopping.is_set() and now >= stop_at:
                    self.set_stopping()
                if self._kick_pending and self.body_running and now >= self._next_kick:
                    self._kick()
        finally:
            if not self.forked:
                channel.close()

    def _from_wakeup_fd(self, signum: int) -> None:
        """A signal the C-level handler wrote to our wake-up fd."""
        if signum == self._kick_signal and self._kicks_unmatched > 0:
            self._kicks_unmatched -= 1
            return
        try:
            sig = signal.Signals(signum)
        except ValueError:
            return
        ours = signal.getsignal(sig) == self.handle_signal
        if not ours and sig in self.options.signals:
            self._not_a_notice()  # the sentinel started a deadline for it
        channel = self._wakeup
        if channel is None or channel.displaced or not channel.installed:
            return  # the Python-level handler hands it over
        if not ours:
            return  # not ours (any more): whoever chains to us calls handle_signal
        self.turn_red()
        self._on_signal(sig)


def _pending_in_thread(native_id: int | None, sig: signal.Signals) -> bool:
    """Whether ``sig`` is pending for that thread (Linux ``/proc``; False if unknown)."""
    if native_id is None:
        return False
    try:
        with open(f"/proc/self/task/{native_id}/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigPnd:"):
                    return bool((int(line.split()[1], 16) >> (sig - 1)) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _in_exit(frame: object) -> bool:
    """Whether ``frame`` (where a signal handler interrupts) is inside the block's exit."""
    f = frame
    while f is not None:
        code = getattr(f, "f_code", None)
        module = getattr(f, "f_globals", {}).get("__name__")
        if code is not None and code.co_name in _EXIT_FRAMES and module == _GRACEFUL_MODULE:
            return True
        f = getattr(f, "f_back", None)
    return False
