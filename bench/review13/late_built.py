"""Starlette builds its middleware stack at the first scope it serves. With
``app.add_middleware(GraceMiddleware, grace=grace)`` and no lifespan scope
(uvicorn ``lifespan="off"``), a SIGTERM that comes before the first request makes
the middleware after the notice: its lean gate is open for good. Then a request
in the lame duck is not counted (the block leaving at grace.wait() ends the
process under it) and a request after intake closed is served instead of 503.
argv: RUNS
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap

from bench.harness import free_port
from bench.loadclient import read_response, request_bytes

SERVER = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    import spotgrace
    from spotgrace.asgi import GraceMiddleware

    async def work(request):
        await asyncio.sleep(int(request.query_params.get("ms", "0")) / 1000)
        return PlainTextResponse("ok")

    async def main():
        async with spotgrace.graceful(stop_timeout=10, drain_delay=1.0) as grace:
            app = Starlette(routes=[Route("/work", work)])
            app.add_middleware(GraceMiddleware, grace=grace)
            config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]),
                                    log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            server.capture_signals = contextlib.nullcontext
            asyncio.create_task(server.serve())
            await grace.wait()  # leave the block at once: the drain keeps the process
        print("EXITING", flush=True)

    asyncio.run(main())
    """
)


async def one() -> list[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    for _ in range(300):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # before any request: the stack is not built yet
    await asyncio.sleep(0.2)
    out = []
    r1, w1 = await asyncio.open_connection("127.0.0.1", port)
    w1.write(request_bytes("/work?ms=1500"))  # begun in the lame duck, must be drained
    await asyncio.sleep(1.2)  # intake closed by now
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(request_bytes("/work?ms=0"))
        late = await asyncio.wait_for(read_response(r2), 5)
        out.append(f"after intake closed: {late.status}")
    except Exception as exc:
        out.append(f"after intake closed: {exc!r}")
    try:
        slow = await asyncio.wait_for(read_response(r1), 5)
        out.append(f"lame-duck request: {slow.status} close={slow.close}")
    except Exception as exc:
        out.append(f"lame-duck request: lost {exc!r}")
    await proc.wait()
    return out


def main() -> int:
    runs = int(sys.argv[1]) if sys.argv[1:] else 3
    bad = 0
    for _ in range(runs):
        out = asyncio.run(one())
        fail = not (out[0].endswith("503") and out[1] == "lame-duck request: 200 close=True")
        bad += fail
        print(("FAIL " if fail else "ok   ") + " | ".join(out))
    print(f"{bad}/{runs} runs wrong")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
