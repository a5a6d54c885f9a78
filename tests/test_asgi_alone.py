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
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from bench.harness import free_port
from bench.loadclient import Response, read_response, request_bytes
from spotgrace._http._asgi_exchange import LeanExchange
from spotgrace.asgi import GraceMiddleware
from tests.helpers.asgi_direct import Recorder, http_scope, quiet

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
            if sys.argv[2:] == ["eager"]:  # leave the block at once: the drain must count
                print("STATS " + json.dumps(grace.statistics()), flush=True)
                return
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
def test_a_block_that_leaves_at_the_notice_still_drains_a_request_begun_before(
    tmp_path: Path,
) -> None:
    # The body does not wait for the server: only the drain keeps the process
    # (and the server in it) alive until the request begun before the notice ends.
    script = tmp_path / "alone.py"
    script.write_text(_SCRIPT)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPOTGRACE_EVENTS_FILE": str(tmp_path / "ev")}
    response, code, out = _run([sys.executable, str(script), str(port), "eager"], port, env)
    assert response.status == 200, out
    assert response.body == b"ok"
    assert response.close
    assert code == 0, out
    stats = json.loads(out.split("STATS ", 1)[1].splitlines()[0])
    assert stats["inflight"] == 1, stats  # counted in flight when the block left
    events = [json.loads(line) for line in (tmp_path / "ev").read_text().splitlines()]
    finished = next(e for e in events if e["event"] == "shutdown.finished")
    assert finished["drained"] is True, finished


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


# --------------------------------------------------- the count at the notice, in process


@pytest.mark.asyncio
async def test_a_lean_request_is_counted_before_request_shutdown_returns() -> None:
    # The drain must never start without a request that began before the notice:
    # it is counted in the thread that takes the notice, not later in the loop.
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with quiet(stop_timeout=10) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        server = Recorder()
        request = asyncio.ensure_future(middleware(http_scope(), server.receive, server.send))
        await asyncio.sleep(0.01)  # in the app, on the lean path
        assert grace.statistics()["inflight"] == 0  # not counted before the notice
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1  # counted before it returned
        gate.set()
        await request
        assert grace.statistics()["inflight"] == 0
        assert grace.statistics()["inflight_total"] == 1
    assert server.closes(), "a response started after the notice must say Connection: close"


@pytest.mark.asyncio
async def test_lean_requests_ending_while_a_notice_comes_from_another_thread_leave_once() -> None:
    # Requests end in the loop while the notice is taken in another thread: each
    # counted one leaves the count exactly once (none stuck, none below zero).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(float(scope["query_string"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    for _ in range(5):
        async with quiet(stop_timeout=10) as grace:
            middleware = GraceMiddleware(app, grace=grace)
            requests = []
            for i in range(300):
                scope = {**http_scope(), "query_string": str((i % 30) / 10000).encode()}
                server = Recorder()
                requests.append(
                    asyncio.ensure_future(middleware(scope, server.receive, server.send))
                )
            await asyncio.sleep(0.001)
            notice = threading.Thread(target=grace.request_shutdown, args=("race",))
            notice.start()
            await asyncio.gather(*requests)
            await asyncio.to_thread(notice.join)
            stats = grace.statistics()
            assert stats["inflight"] == 0, stats
            assert stats["inflight_total"] <= 300, stats


@pytest.mark.asyncio
async def test_a_notice_listener_that_fails_does_not_stop_the_shutdown() -> None:
    def broken(tracker: Any) -> None:
        raise RuntimeError("boom")

    with structlog.testing.capture_logs() as logs:
        async with quiet(stop_timeout=10) as grace:
            grace._on_notice(broken)
            grace.request_shutdown("test")
            assert grace.stopping
    failed = [e for e in logs if e["event"] == "notice_listener.failed"]
    assert failed, logs
    assert "boom" in failed[0]["error"], logs
    assert any(e["event"] == "shutdown.finished" for e in logs)


@pytest.mark.asyncio
async def test_a_lean_request_held_without_a_task_leaves_the_count() -> None:
    # A request run outside an asyncio Task (no task to cancel) is held as None:
    # its exit must still leave the count (it was read as "not held").
    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    async with quiet(stop_timeout=10) as grace:
        middleware = GraceMiddleware(app, grace=grace)
        lean = LeanExchange(middleware._gate, Recorder().send, Recorder().receive)
        middleware._live[lean] = None
        grace.request_shutdown("test")
        assert grace.statistics()["inflight"] == 1
        del middleware._live[lean]
        lean.ended = True
        middleware._release(lean)
        assert grace.statistics()["inflight"] == 0
