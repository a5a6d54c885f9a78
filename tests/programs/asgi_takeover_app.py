"""A bare ASGI app in spotgrace.asgi.GraceMiddleware for gunicorn's spotgrace UvicornWorker.

``/work?ms=N`` answers after N ms with the class of the ``send`` it was given
(``RequestResponseCycle``: uvicorn's own, the request went straight to the
app); ``/events`` is an event stream that runs until the client or the
shutdown ends it.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/events":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        gone = asyncio.ensure_future(_disconnect(receive))
        n = 0
        while not gone.done():
            await send(
                {"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True}
            )
            n += 1
            await asyncio.sleep(0.05)
        return
    ms = int(scope["query_string"].decode().partition("=")[2] or 0)
    await asyncio.sleep(ms / 1000)
    body = type(getattr(send, "__self__", send)).__name__.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def __getattr__(name: str) -> object:
    if name == "app":  # made in the worker, where the master's shared state is known
        from spotgrace.asgi import GraceMiddleware

        return GraceMiddleware(_app)
    raise AttributeError(name)
