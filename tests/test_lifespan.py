"""spotgrace.asgi.LifespanGrace: spotgrace in the lifespan of a server that owns the process.

``uvicorn --workers 2`` runs ``bench/lb_lifespan_app.py``: SIGTERM to uvicorn's
parent; each worker turns readiness red, keeps serving for the lame duck, then
hands the signal back to uvicorn, which stops accepting and ends the lifespan.
No ``SystemExit`` in the lifespan, no worker left answering 503, exit 0.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import free_port
from spotgrace.asgi import LifespanGrace

ROOT = Path(__file__).resolve().parent.parent


def test_before_serve_it_is_ready_and_not_stopping() -> None:
    grace = LifespanGrace()
    assert grace.ready
    assert not grace.stopping
    assert math.isinf(grace.remaining())
    assert asyncio.run(grace.wait(0.01)) is False


def test_serve_refuses_an_exit_code() -> None:
    async def main() -> None:
        async with LifespanGrace().serve(exit_code=0):
            pass

    with pytest.raises(ValueError, match="exit_code"):
        asyncio.run(main())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_uvicorn_workers_lame_duck_then_the_server_stops_and_exits_0() -> None:
    import requests

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SPOTGRACE_DRAIN_DELAY": "3",
        "SPOTGRACE_STOP_TIMEOUT": "10",
    }
    argv = [sys.executable, "-m", "uvicorn", "bench.lb_lifespan_app:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                if requests.get(f"{base}/readyz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        time.sleep(1.0)  # both workers up
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # uvicorn's supervisor passes SIGTERM on to its workers within about 0.5 s.
        end = time.monotonic() + 2
        while requests.get(f"{base}/readyz", timeout=5).status_code != 503:
            assert time.monotonic() < end, "readiness did not turn red"
            time.sleep(0.05)
        time.sleep(0.2)  # both workers
        probes = [requests.get(f"{base}/readyz", timeout=5).status_code for _ in range(8)]
        work = requests.get(f"{base}/work", timeout=5)
        in_lame_duck = time.monotonic() - t0 < 3
        out, _ = proc.communicate(timeout=15)
        gone = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out.decode(errors="replace")
    assert in_lame_duck, text
    assert probes == [503] * 8, text
    assert work.status_code == 200, text
    assert work.headers["connection"] == "close", text
    assert proc.returncode == 0, text
    assert 2.9 < gone < 10, text
    assert "shutdown failed" not in text.lower(), text
    assert "SystemExit" not in text, text
    assert text.count("Application shutdown complete") == 2, text
    assert text.count(": ran") == 2, text  # the hook, in each worker
