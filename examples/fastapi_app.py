"""A FastAPI service under spotgrace (uvicorn): SIGTERM costs no request.

    python examples/fastapi_app.py                      # 0.0.0.0:8000 (HOST, PORT to change)
    SPOTGRACE_STOP_TIMEOUT=120 SPOTGRACE_DRAIN_DELAY=5 python examples/fastapi_app.py

Routes: ``GET /work?ms=N`` (takes N ms), ``GET /events`` (server-sent events,
one a second), ``GET /readyz`` and ``GET /healthz`` (added by spotgrace). The
app itself is plain FastAPI: spotgrace wraps it in ``GraceMiddleware``. On
SIGTERM: readiness goes red, the listener closes, requests in flight finish,
event streams are ended cleanly, then the lifespan shutdown and the spotgrace
hooks run, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import spotgrace
import spotgrace.asgi

spotgrace.configure_json_logging(stream=sys.stdout)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@spotgrace.on_shutdown(order=10, timeout=5)
async def flush_metrics() -> None:
    """Runs after the drain, within its own 5 s and the overall budget."""
    await asyncio.sleep(0.01)
    say("hook: metrics flushed")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    say("lifespan: started")
    yield
    say("lifespan: shutdown complete")


app = FastAPI(lifespan=lifespan)


@app.get("/work")
async def work(ms: int = 100) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/events")
async def events() -> StreamingResponse:
    async def ticks() -> AsyncIterator[str]:
        n = 0
        while True:
            yield f"data: tick {n}\n\n"
            n += 1
            await asyncio.sleep(1)

    return StreamingResponse(ticks(), media_type="text/event-stream")


if __name__ == "__main__":
    spotgrace.asgi.serve(
        app,
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
    )
