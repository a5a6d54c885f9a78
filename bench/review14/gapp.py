"""The ASGI app the review14 attacks run under gunicorn + spotgrace's UvicornWorker.

``gapp:app`` is ``spotgrace.asgi.GraceMiddleware(_app)`` (the takeover path);
``gapp:wrapped`` is the same inside another middleware (the full path).

Routes: ``/work?ms=N`` answers after N ms with the class of the ``send`` it got;
``/events`` an event stream until disconnect (``?ms=N``: its response starts
after N ms; ``?size=N``: N bytes more per event); ``/download?n=N&ms=M`` a chunked body of N chunks M ms apart;
``/json?n=N&ms=M`` a Content-Length body in N parts M ms apart; ``/ws`` a WebSocket echo; ``/raise`` raises. Events go to ``$GAPP_LOG`` (JSON lines).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any


def _log(**event: Any) -> None:
    path = os.environ.get("GAPP_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "t": time.time(), **event}) + "\n")


def _q(scope: dict[str, Any]) -> dict[str, str]:
    out = {}
    for part in scope["query_string"].decode().split("&"):
        k, _, v = part.partition("=")
        out[k] = v
    return out


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                _log(event="lifespan-shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                _log(event="ws-end", code=msg.get("code"))
                return
            await send({"type": "websocket.send", "text": msg.get("text") or ""})
    q = _q(scope)
    path = scope["path"]
    if path == "/events":
        await asyncio.sleep(int(q.get("ms") or 0) / 1000)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        gone = asyncio.ensure_future(_disconnect(receive))
        n = 0
        pad = b"x" * int(q.get("size") or 0)  # ?size=N: events of N bytes more
        while not gone.done():
            body = b"data: %d%s\n\n" % (n, pad)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            n += 1
            await asyncio.sleep(0.05)
        _log(event="events-end", n=n)
        return
    if path == "/download":
        n, ms = int(q.get("n") or 10), int(q.get("ms") or 100)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(n):
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            await asyncio.sleep(ms / 1000)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/json":  # a Content-Length body sent in n parts, ms apart (not a stream)
        n, ms = int(q.get("n") or 10), int(q.get("ms") or 100)
        part = b"x" * 1000
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % (n * 1000))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(n):
            await send({"type": "http.response.body", "body": part, "more_body": i < n - 1})
            await asyncio.sleep(ms / 1000)
        _log(event="json-done")
        return
    if path == "/tuple":  # the app (or a middleware) stores the request headers as a tuple
        scope["headers"] = tuple(scope["headers"])
    if path == "/raise":
        raise RuntimeError("boom")
    await asyncio.sleep(int(q.get("ms") or 0) / 1000)
    body = type(getattr(send, "__self__", send)).__name__.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Outer:
    """Another middleware around GraceMiddleware: the worker must take the full path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def __getattr__(name: str) -> object:
    if name in ("app", "wrapped"):  # made in the worker (the master's shared state)
        import spotgrace
        from spotgrace.asgi import GraceMiddleware

        spotgrace.on_shutdown(lambda: _log(event="worker-hook"))  # runs in worker_exit
        mw = GraceMiddleware(_app)
        return mw if name == "app" else _Outer(mw)
    raise AttributeError(name)
