"""spotgrace's gunicorn UvicornWorker takes uvicorn's bookkeeping over, as ``serve()`` does.

Before the notice a request goes straight to the app (it gets uvicorn's own
``send``); at the notice the requests under way are marked ``Connection:
close``; when the master stops intake an event stream begun before the notice
is ended; uvicorn's shutdown waits for the requests. A real gunicorn master, a
real SIGTERM, raw HTTP/1.1 clients.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from bench.loadclient import Response, read_response, request_bytes
from tests.test_gunicorn import PROGRAMS, _env, gunicorn

pytestmark = pytest.mark.slow

_WORKER = "spotgrace.gunicorn.workers.UvicornWorker"


async def _across_sigterm(port: int, sigterm: Callable[[], None]) -> tuple[Response, bytes]:
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
    events_r, events_w = await asyncio.open_connection("127.0.0.1", port)
    try:
        slow_w.write(request_bytes("/work?ms=0"))
        first = await asyncio.wait_for(read_response(slow_r), 10)
        assert first.body == b"RequestResponseCycle", "not straight to the app"
        assert not first.close
        slow_w.write(request_bytes("/work?ms=1500"))
        events_w.write(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        head = await asyncio.wait_for(events_r.readuntil(b"data: 2"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        sigterm()
        slow = await asyncio.wait_for(read_response(slow_r), 15)
        rest = await asyncio.wait_for(events_r.read(), 15)  # until the worker closes it
        return slow, rest
    finally:
        slow_w.close()
        events_w.close()


@pytest.mark.timeout(90)
def test_the_worker_runs_requests_straight_and_still_drains_and_ends_streams() -> None:
    args = ["-c", "python:spotgrace.gunicorn", "-w", "1", "-k", _WORKER]
    with gunicorn([*args, "--chdir", str(PROGRAMS), "asgi_takeover_app:app"], _env(1.0, 15)) as g:
        slow, rest = asyncio.run(
            _across_sigterm(g.port, lambda: g.popen.send_signal(signal.SIGTERM))
        )
        code = g.popen.wait(20)
    out = g.output()
    # Begun before the notice, answered after it: whole, and its connection ends.
    assert slow.status == 200, out
    assert slow.body == b"RequestResponseCycle", out
    assert slow.close, out
    # The event stream begun before the notice was ended when intake stopped.
    assert rest.endswith(b"0\r\n\r\n"), (rest[-60:], out)
    assert code == 0, out
    assert "http.takeover_off" not in out, out


async def _stream_without_accept_across_sigterm(port: int, sigterm: Callable[[], None]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes("/events"))  # no Accept: not recognised as a stream
        await asyncio.wait_for(reader.readuntil(b"data: 2"), 10)
        sigterm()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@pytest.mark.timeout(90)
def test_a_request_that_outlives_the_workers_time_is_cancelled_and_the_exit_says_so() -> None:
    # An event stream requested without Accept: text/event-stream is not ended at
    # intake stop (docs/gunicorn.md); uvicorn may wait for it half of the time left,
    # then cancels it: the lifespan shutdown still runs and the master's exit is 1.
    args = ["-c", "python:spotgrace.gunicorn", "-w", "1", "-k", _WORKER]
    with gunicorn([*args, "--chdir", str(PROGRAMS), "asgi_takeover_app:app"], _env(0.5, 6)) as g:
        asyncio.run(
            _stream_without_accept_across_sigterm(
                g.port, lambda: g.popen.send_signal(signal.SIGTERM)
            )
        )
        code = g.popen.wait(30)
    out = g.output()
    assert "worker.requests_cancelled" in out, out
    assert "gunicorn.worker_failed" in out, out
    assert code == 1, out
