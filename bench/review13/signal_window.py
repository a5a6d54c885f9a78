"""SIGTERM arrives while a lean request is about to start its response: the
Python-level signal handler turns readiness red at once (main thread = the loop's),
but the middleware's gate is closed only when the coordinator thread takes the
notice. A response started in between reads ready=False yet carries no
Connection: close. The app sends SIGTERM to its own process and starts its response
as soon as readiness is red. argv: RUNS
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes

SERVER = textwrap.dedent(
    """
    import asyncio, contextlib, os, signal, sys
    import uvicorn
    import spotgrace
    from spotgrace.asgi import GraceMiddleware

    G = []

    async def app(scope, receive, send):
        grace = G[0]
        if scope["path"] == "/kill":
            os.kill(os.getpid(), signal.SIGTERM)
            while grace.ready:  # the Python-level handler runs here, in this thread
                pass
        ready = b"1" if grace.ready else b"0"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-ready", ready)]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        async with spotgrace.graceful(stop_timeout=10, drain_delay=0.3) as grace:
            G.append(grace)
            config = uvicorn.Config(GraceMiddleware(app, grace=grace), host="127.0.0.1",
                                    port=int(sys.argv[1]), log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            server.capture_signals = contextlib.nullcontext
            task = asyncio.create_task(server.serve())
            await grace.wait()
            server.should_exit = True
            await task

    asyncio.run(main())
    """
)


async def one() -> tuple[str | None, bool]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220  (waited for after the response)
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(request_bytes("/kill"))
        response = await asyncio.wait_for(read_response(reader), 10)
        writer.close()
        return response.headers.get("x-ready"), response.close
    finally:
        proc.wait(20)


def main() -> int:
    runs = int(sys.argv[1]) if sys.argv[1:] else 10
    bad = 0
    for _ in range(runs):
        ready, close = asyncio.run(one())
        bad += ready == "0" and not close
        print(f"x-ready={ready} close={close}")
    print(f"responses started with readiness red but without Connection: close: {bad}/{runs}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
