"""An aiohttp service under spotgrace: SIGTERM costs no request.

    python examples/aiohttp_app.py                      # 0.0.0.0:8080 (HOST, PORT to change)
    SPOTGRACE_STOP_TIMEOUT=120 SPOTGRACE_DRAIN_DELAY=5 python examples/aiohttp_app.py

Routes: ``GET /work?ms=N`` (takes N ms), ``GET /ws`` (an echo WebSocket),
``GET /readyz`` and ``GET /healthz`` (added by spotgrace). On SIGTERM:
readiness goes red, the listener closes, requests in flight finish, open
WebSockets are closed with 1001, then aiohttp's ``on_cleanup`` and the
spotgrace hooks run, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import WSMsgType, web

import spotgrace
import spotgrace.aiohttp

spotgrace.configure_json_logging(stream=sys.stdout)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@spotgrace.on_shutdown(order=10, timeout=5)
async def flush_metrics() -> None:
    """Runs after the drain, within its own 5 s and the overall budget."""
    await asyncio.sleep(0.01)
    say("hook: metrics flushed")


async def work(request: web.Request) -> web.Response:
    ms = int(request.query.get("ms", "100"))
    await asyncio.sleep(ms / 1000)
    return web.json_response({"slept_ms": ms})


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def close_resources(app: web.Application) -> None:
    say("aiohttp on_cleanup: resources closed")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/work", work)
    app.router.add_get("/ws", ws_echo)
    app.on_cleanup.append(close_resources)
    return app


if __name__ == "__main__":
    spotgrace.aiohttp.run_app(
        make_app(),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8080")),
        runner_options={"access_log": None},
    )
