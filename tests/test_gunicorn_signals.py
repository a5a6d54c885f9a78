"""gunicorn's other signals during spotgrace's shutdown: real master, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

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
