"""A WebSocket app that waits for messages with a timeout (asyncio.wait_for around
receive(): keep-alive pings, idle checks) behind GraceMiddleware, on a real uvicorn
(wsproto). Each timed-out receive leaves the middleware's inner receive() task
behind, and that task swallows the next message: the client's messages are lost.
argv: with|without (the middleware)
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import structlog
import uvicorn

import spotgrace
from bench.harness import free_port
from spotgrace.asgi import GraceMiddleware

structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        try:
            message = await asyncio.wait_for(receive(), 0.05)
        except TimeoutError:
            continue  # nothing for a while: e.g. send a ping, check idleness
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text")})


async def main(use: bool) -> int:
    async with spotgrace.graceful(signals=(), exit_code="return", stop_timeout=10) as grace:
        served = GraceMiddleware(app, grace=grace) if use else app
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                served,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="off",
                ws="wsproto",
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110  (uvicorn has no event for it)
            await asyncio.sleep(0.01)
        lost = 0
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
            for i in range(20):
                await ws.send_str(f"m{i}")
                try:
                    reply = await ws.receive(timeout=1)
                    lost += reply.data != f"m{i}"
                except TimeoutError:
                    lost += 1
                await asyncio.sleep(0.12)  # more than the app's receive timeout
            await ws.close()
        print(f"{'with' if use else 'without'} the middleware: {lost}/20 messages lost", flush=True)
        await asyncio.sleep(0.5)
        print(
            "WebSocket requests still in flight after the client closed:",
            grace.statistics()["inflight"],
            flush=True,
        )
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            print("uvicorn could not shut down in 5 s: the app never saw the disconnect")
            lost += 1000
            server.force_exit = True
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] == "with")))
