"""A FastAPI app for gunicorn's uvicorn workers: ``plain`` (a /readyz always 200) and ``graced``.

``graced`` is the same app in ``spotgrace.asgi.GraceMiddleware`` with no
``grace=``: under ``spotgrace.gunicorn`` it reads the state the master shares.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

__all__ = ["plain"]  # and `graced`, made on first use (module __getattr__)

plain = FastAPI()


@plain.get("/work", response_class=PlainTextResponse)
async def work(ms: int = 0) -> str:
    """Sleep ``ms`` milliseconds, then answer ``ok``."""
    await asyncio.sleep(ms / 1000)
    return "ok"


@plain.post("/echo")
async def echo(request: Request) -> Response:
    """Answer the request body."""
    return Response(await request.body())


@plain.get("/readyz", response_class=PlainTextResponse)
async def readyz() -> str:
    """Always 200: a health endpoint without spotgrace."""
    return "ok"


def __getattr__(name: str) -> object:
    if name == "graced":
        import spotgrace.asgi

        return spotgrace.asgi.GraceMiddleware(plain)
    raise AttributeError(name)
