"""gunicorn's other signals during spotgrace's shutdown: real master, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.test_gunicorn import EXAMPLES, _env, gunicorn

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["SIGHUP", "SIGTTIN", "SIGUSR2"])
def test_a_gunicorn_signal_during_the_lame_duck_does_not_stall_the_shutdown(name: str) -> None:
    # Before the fix, SIGHUP in the lame duck made gunicorn reload: its arbiter waited
    # graceful_timeout for old workers that keep serving the lame duck, the sequence's
    # SIGTERM sat in its queue, the watchdog ended the master at 124 and the workers
    # were left behind holding the port.
    args = ["-c", str(EXAMPLES / "gunicorn.conf.py"), "--chdir", str(EXAMPLES), "flask_app:app"]
    with gunicorn(args, _env(drain_delay=2, stop_timeout=12)) as g:
        base = f"http://127.0.0.1:{g.port}"
        pgid = g.popen.pid  # its own session: the master and its workers
        try:
            t0 = time.monotonic()
            g.popen.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
            g.popen.send_signal(getattr(signal, name))
            time.sleep(0.5)
            assert requests.get(f"{base}/work", timeout=5).status_code == 200
            try:
                code = g.popen.wait(15)
            except subprocess.TimeoutExpired:
                code = None
            elapsed = time.monotonic() - t0
            assert code == 0, g.output()
            assert elapsed < 9, (elapsed, g.output())
            assert "gunicorn.signal_ignored" in g.output()
            assert "cleanup done" in g.output()  # the master's hook ran
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)  # no worker outlives the test


@pytest.mark.timeout(90)
def test_a_worker_forked_during_the_lame_duck_exits_cleanly() -> None:
    # Before the fix, a worker gunicorn forked to replace a dead one during the lame duck
    # inherited faulthandler's armed timer (the master's backstop) and hung for good in
    # its exit hooks (dump_traceback_later waiting for a thread it does not have): the
    # master waited graceful_timeout, then exited 1.
    import subprocess as sp

    args = ["-c", "python:spotgrace.gunicorn", "-w", "2", "--chdir", str(EXAMPLES)]
    with gunicorn([*args, "flask_app:app"], _env(drain_delay=2, stop_timeout=12)) as g:
        pgid = g.popen.pid
        try:
            first: list[int] = []
            end = time.monotonic() + 20  # both workers booted (ready means one answered)
            while len(first) < 2 and time.monotonic() < end:
                pids = sp.run(["pgrep", "-P", str(pgid)], capture_output=True, text=True).stdout
                first = [int(pid) for pid in pids.split() if not _is_sentinel(int(pid))]
                time.sleep(0.1)
            assert len(first) == 2, g.output()
            g.wait_ready()
            t0 = time.monotonic()
            g.popen.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            os.kill(first[0], signal.SIGKILL)  # gunicorn forks a replacement in the lame duck
            try:
                code = g.popen.wait(15)
            except subprocess.TimeoutExpired:
                code = None
            elapsed = time.monotonic() - t0
            out = g.output()
            assert code == 0, out
            assert elapsed < 8, (elapsed, out)  # not held to graceful_timeout (~7 s here)
            assert out.count("pool closed") >= 2, out  # the replacement ran its hooks too
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def _is_sentinel(pid: int) -> bool:
    """Whether ``pid`` is spotgrace's sentinel (a child of the master too), not a worker."""
    try:
        return b"_sentinel_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
