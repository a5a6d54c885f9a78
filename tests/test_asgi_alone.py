"""GraceMiddleware used alone (not under serve()): the lean path before the notice, real SIGTERM.

Before the notice the middleware runs a request with a flag check and the probe
check (no in-flight scope); at the notice its requests under way are handed to
the drain. These tests send a real SIGTERM to a real uvicorn in a subprocess
while a request that began before the notice is still in the app: its response
(started after the notice) must arrive whole, with ``Connection: close``, and
the process must exit cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.harness import free_port
from bench.loadclient import Response, read_response, request_bytes

ROOT = Path(__file__).resolve().parent.parent

#: spotgrace owns SIGTERM; uvicorn.Server runs GraceMiddleware without serve().
_SCRIPT = textwrap.dedent(
    """
    import asyncio, contextlib, json, sys
    import uvicorn
    import spotgrace
    from spotgrace.asgi import GraceMiddleware

    async def app(scope, receive, send):
        ms = int(scope["query_string"].decode().partition("=")[2] or 0)
        await asyncio.sleep(ms / 1000)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        async with spotgrace.graceful(stop_timeout=10, drain_delay=0.5) as grace:
            config = uvicorn.Config(GraceMiddleware(app, grace=grace), host="127.0.0.1",
                                    port=int(sys.argv[1]), log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            server.capture_signals = contextlib.nullcontext  # the signals are spotgrace's
            task = asyncio.create_task(server.serve())
            await grace.wait()
            server.should_exit = True
            await task
            print("STATS " + json.dumps(grace.statistics()), flush=True)

    asyncio.run(main())
    """
)


async def _slow_request_across_sigterm(port: int, proc: subprocess.Popen[str]) -> Response:
    """A request that reaches the app before SIGTERM and answers after it."""
    end = time.monotonic() + 30
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            assert time.monotonic() < end, "the server did not start"
            assert proc.poll() is None, "the server exited"
            await asyncio.sleep(0.05)
    try:
        writer.write(request_bytes("/work?ms=0"))  # warm the connection (keep-alive)
        first = await asyncio.wait_for(read_response(reader), 10)
        assert first.status == 200
        assert not first.close
        writer.write(request_bytes("/work?ms=2000"))
        await asyncio.sleep(0.4)  # in the app now, on the lean path
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(read_response(reader), 15)
    finally:
        writer.close()


def _run(argv: list[str], port: int, env: dict[str, str]) -> tuple[Response, int, str]:
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    try:
        response = asyncio.run(_slow_request_across_sigterm(port, proc))
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return response, proc.returncode, out


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sigterm_to_uvicorn_running_the_middleware_alone_waits_for_a_request_begun_before(
    tmp_path: Path,
) -> None:
    script = tmp_path / "alone.py"
    script.write_text(_SCRIPT)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    response, code, out = _run([sys.executable, str(script), str(port)], port, env)
    assert response.status == 200, out
    assert response.body == b"ok"
    assert response.close, "a response started after the notice must say Connection: close"
    assert code == 0, out
    stats = json.loads(out.split("STATS ", 1)[1].splitlines()[0])
    # Not counted before the notice (the lean path), handed to the drain at the notice.
    assert stats["inflight_total"] == 1, stats
    assert stats["inflight"] == 0, stats


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sigterm_to_plain_uvicorn_with_lifespangrace_waits_for_a_request_begun_before() -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SPOTGRACE_DRAIN_DELAY": "0.5",
        "SPOTGRACE_STOP_TIMEOUT": "10",
    }
    argv = [sys.executable, "-m", "uvicorn", "bench.lb_lifespan_app:app", "--port", str(port)]
    response, code, out = _run(argv, port, env)
    assert response.status == 200, out
    assert response.body == b"ok"
    assert response.close, "a response started after the notice must say Connection: close"
    # A single uvicorn process raises the SIGTERM it captured again once it has
    # shut down (uvicorn >= 0.29): killed by it, after a clean shutdown.
    assert code in (0, -signal.SIGTERM), out
    assert "clean=True" in out, out
    assert ": done" in out, out  # the lifespan ended
