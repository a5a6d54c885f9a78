"""The master's side of ``spotgrace.gunicorn``: notice, lame duck, intake, budget, exit code."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

import spotgrace

from .._http._listen import stop_new_handshakes, wait_accept_queues_empty
from .._http._prefork import SharedState, current, install
from .._http._wsgi import GraceMiddleware

__all__ = ["Master"]

#: Exit code of the master when a worker's shutdown was not clean.
WORKER_FAILED = 1
#: The share of what is left at intake that the master keeps for its own hooks and exit.
_MASTER_SHARE = 0.15
_PID = struct.Struct("=i")  # a worker's pid on the report pipe: > 0 clean, < 0 not clean
#: gunicorn's signals that change its workers (reload, re-exec, more, fewer): dropped from
#: the notice on. A reload then would wait up to graceful_timeout for old workers that
#: keep serving the lame duck, blocking the arbiter's loop past the deadline.
_DROPPED_AFTER_NOTICE = ("SIGHUP", "SIGUSR2", "SIGTTIN", "SIGTTOU")


class Master:
    """One gunicorn master under spotgrace; a worker holds a forked copy of it."""

    def __init__(self) -> None:
        self.state = SharedState()
        install(self.state)
        # Options are checked now, in the master, so a bad SPOTGRACE_* value stops
        # gunicorn at start with a clear error instead of at the first SIGTERM.
        self._graceful = spotgrace.graceful()
        self._grace: spotgrace.Grace | None = None
        self._pid = os.getpid()
        self._log = structlog.get_logger("spotgrace.gunicorn")
        # Workers report how their shutdown went on this pipe (one write < PIPE_BUF: atomic).
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._stopped_workers: set[int] = set()
        self._clean: set[int] = set()  # workers that reported a clean exit
        self._unclean: set[int] = set()  # workers that reported a failed exit
        self._arbiter: Any = None
        self._thread: threading.Thread | None = None
        self._master_hooks: list[Callable[..., Any]] = []
        self._exiting = False  # gunicorn is stopping by itself (SIGQUIT, a boot error...)
        self._dropped: list[int] = []  # gunicorn signals dropped during the shutdown

    # ------------------------------------------------------------------ master

    def start(self, arbiter: Any) -> None:
        """In ``when_ready``: enter ``graceful()``, chain the handlers, start the sequence thread."""
        self._pid = os.getpid()
        self._arbiter = arbiter
        grace = self._grace = self._graceful.__enter__()
        for sig in grace.options.signals:
            inner = signal.getsignal(sig)
            if callable(inner):
                signal.signal(sig, self._chain(inner))
        for name in _DROPPED_AFTER_NOTICE:
            sig = getattr(signal, name)
            inner = signal.getsignal(sig)
            if callable(inner):
                signal.signal(sig, self._unless_noticed(inner))
        budget = grace.options.budget - grace.options.drain_delay
        arbiter.cfg.set("graceful_timeout", max(1, int(budget * (1 - _MASTER_SHARE))))
        self._master_hooks = [hook.fn for hook in _registry().hooks()]
        self._thread = threading.Thread(
            target=self._sequence, name="spotgrace-gunicorn", daemon=True
        )
        self._thread.start()

    def _chain(self, inner: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        state = self.state

        def handler(signum: int, frame: Any) -> Any:
            state.set_noticed()  # first: readiness red in every worker, now
            return inner(signum, frame)

        return handler

    def _unless_noticed(self, inner: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        state, dropped = self.state, self._dropped

        def handler(signum: int, frame: Any) -> Any:
            if state.noticed:
                dropped.append(signum)  # logged by the sequence thread
                return None
            return inner(signum, frame)

        return handler

    def _sequence(self) -> None:
        grace = self._grace
        assert grace is not None
        while not grace.wait(0.05):  # a notice from early warning has no signal handler
            if not grace.ready:
                self.state.set_noticed()
            self._read_reports()
        self.state.set_noticed()
        if self._exiting:
            return
        arbiter = self._arbiter
        listeners = [lst for lst in arbiter.LISTENERS if hasattr(lst, "fileno")]
        socks = [getattr(lst, "sock", lst) for lst in listeners]
        stop_new_handshakes(socks)
        emptied = wait_accept_queues_empty(socks, limit=min(1.0, grace.remaining() / 8))
        # gunicorn takes whole seconds: rounded down, so it stays inside the budget.
        timeout = max(1, int(grace.remaining() * (1 - _MASTER_SHARE)))
        arbiter.cfg.set("graceful_timeout", timeout)
        self._stopped_workers = set(arbiter.WORKERS)
        self.state.set_stopping(time.monotonic() + timeout - 0.25)
        self._log.info(
            "gunicorn.stopping",
            workers=len(self._stopped_workers),
            graceful_timeout=round(timeout, 3),
            accept_queue_emptied=emptied,
        )
        arbiter.signal(signal.SIGTERM, None)  # gunicorn's own graceful stop, from its loop
        self._log_dropped()

    def _log_dropped(self) -> None:
        if self._dropped:
            names = sorted({signal.Signals(sig).name for sig in self._dropped})
            self._log.warning("gunicorn.signal_ignored", signals=names, reason="shutting down")

    def exit(self) -> None:
        """In ``on_exit``: finish the sequence (master hooks), then exit truthfully."""
        if os.getpid() != self._pid or self._grace is None:
            return
        self._exiting = True
        failed = sorted(self._failed_workers())
        if failed:
            self._log.error("gunicorn.worker_failed", workers=failed, exit_code=WORKER_FAILED)
        code: int | str | None = None
        try:
            self._graceful.__exit__(None, None, None)
        except SystemExit as exc:
            code = exc.code
        if failed:
            raise SystemExit(WORKER_FAILED)
        if code is not None:
            raise SystemExit(code)

    def _failed_workers(self) -> set[int]:
        self._read_reports()
        return (self._stopped_workers - self._clean) | self._unclean

    def _read_reports(self) -> None:
        """Empty the report pipe (read while serving too: workers recycled by ``max_requests``
        or a reload report as well, and a full pipe would lose the reports that count)."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read_fd, 4096):
                for (pid,) in _PID.iter_unpack(chunk[: len(chunk) // _PID.size * _PID.size]):
                    (self._clean if pid > 0 else self._unclean).add(abs(pid))
        if not self._stopped_workers:  # before intake stops only failures matter
            self._clean.clear()

    # ------------------------------------------------------------------ worker

    def forget_master_hooks(self) -> None:
        """In a worker: the master's hooks (inherited by fork) run in the master only."""
        registry = _registry()
        for fn in self._master_hooks:
            registry.unregister(fn)

    def guard_worker_signals(self) -> None:
        """In a worker: SIGTERM/SIGINT sent to the whole process group (Ctrl-C, a group
        kill) must not end the worker during the master's lame duck. A signal that
        comes while the master is in its lame duck is ignored (the master stops the
        worker when intake stops); one that comes before any notice is held 0.5 s,
        time for the master to see its own copy, then checked again; otherwise
        (the master's own stop, reload, scale-down) gunicorn's handler runs.
        """
        state = self.state

        def lame_duck() -> bool:
            return state.noticed and not state.stopping and os.getppid() == self._pid

        for sig in (signal.SIGTERM, signal.SIGINT):
            inner = signal.getsignal(sig)
            if not callable(inner):
                continue

            def handler(signum: int, frame: Any, inner: Any = inner) -> None:
                if lame_duck():
                    return
                if state.noticed:
                    inner(signum, frame)
                    return

                def later() -> None:
                    if lame_duck():
                        return
                    if signum == signal.SIGINT:  # gunicorn's quit exits: main thread only
                        os.kill(os.getpid(), signal.SIGQUIT)
                    else:
                        inner(signum, None)  # sets ``alive = False``: fine from a thread

                timer = threading.Timer(0.5, later)
                timer.daemon = True
                timer.start()

            signal.signal(sig, handler)

    def wrap_wsgi(self, app: Any) -> Any:
        """The worker's WSGI app in the middleware, unless the app wrapped itself."""
        if getattr(app, "spotgrace_wrapped", False):
            return app
        return GraceMiddleware(app)

    def worker_exit(self, pid: int) -> None:
        """In a worker leaving: run its hooks within the workers' deadline; report how it went."""
        if pid == self._pid:  # gunicorn also calls worker_exit in the master
            return
        clean = _run_worker_hooks(self.state.worker_remaining())
        worker = current()
        if worker is not None and worker.unclean:
            clean = False
        if not clean:
            self.state.set_worker_failed()
        with contextlib.suppress(OSError):
            os.write(self._write_fd, _PID.pack(pid if clean else -pid))


def _registry() -> spotgrace.HookRegistry:
    registry: spotgrace.HookRegistry = spotgrace.on_shutdown.__self__  # type: ignore[attr-defined]
    return registry


def _run_worker_hooks(left: float) -> bool:
    """Run this worker's default-registry hooks within ``left`` s; True if all went well."""
    if not _registry().hooks():
        return True
    budget = min(left, 30.0)
    if budget < 0.1:
        return False
    margin = min(0.2, budget / 10)
    block = spotgrace.graceful(
        stop_timeout=budget,
        margin=margin,
        drain_delay=0,
        signals=(),
        interrupt=False,
        exit_code="return",
        watch="off",
    )
    with block as grace:
        grace.request_shutdown("gunicorn worker exit")
    stats = grace.statistics()
    return not (
        stats.get("hooks_failed") or stats.get("hooks_timed_out") or stats.get("hooks_skipped")
    )
