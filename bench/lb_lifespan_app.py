"""A FastAPI app that enters spotgrace in its lifespan, for servers that own the process.

uvicorn bench.lb_lifespan_app:app --workers 2
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

import spotgrace
from spotgrace.asgi import GraceMiddleware, LifespanGrace

grace = LifespanGrace()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with grace.serve():
        yield
    print(f"lifespan {os.getpid()}: done", flush=True)


api = FastAPI(lifespan=lifespan)


@api.get("/work", response_class=PlainTextResponse)
async def work(ms: int = 0) -> str:
    await asyncio.sleep(ms / 1000)
    return "ok"


@spotgrace.on_shutdown
def hook() -> None:
    print(f"hook {os.getpid()}: ran", flush=True)


app = GraceMiddleware(api, grace=grace)
