"""spotgrace.aiohttp.run_app over: an Application subclass (own _make_request calling
super, default web.Request), a sub-app, a middleware that clones the request, and
(variant "instance") an instance-level _make_request override. argv: port variant
"""

from __future__ import annotations

import asyncio
import sys
import warnings

from aiohttp import web

import spotgrace.aiohttp

warnings.simplefilter("ignore", DeprecationWarning)
port, variant = int(sys.argv[1]), sys.argv[2]
MADE: list[str] = []


class MyApp(web.Application):
    def _make_request(self, message, payload, protocol, writer, task, _cls=web.Request):  # type: ignore[no-untyped-def,override]
        request = super()._make_request(message, payload, protocol, writer, task, _cls)
        request["made_by"] = "subclass"
        return request


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
    response = web.StreamResponse(
        headers={"X-Class": type(request).__name__, "X-Made": str(request.get("made_by"))}
    )
    await response.prepare(request)
    await response.write(b"ok")
    await response.write_eof()
    return response


@web.middleware
async def cloning(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if "clone" in request.query:
        request = request.clone(headers={**request.headers, "X-Cloned": "1"})
    return await handler(request)


app = (
    MyApp(middlewares=[cloning])
    if variant == "subclass"
    else web.Application(middlewares=[cloning])
)
if variant == "instance":
    orig = app._make_request

    def _instance_make(*args, **kwargs):  # type: ignore[no-untyped-def]
        request = orig(*args, **kwargs)
        request["made_by"] = "instance"
        return request

    app._make_request = _instance_make  # type: ignore[method-assign]
sub = web.Application()
sub.router.add_get("/slow", slow)
app.router.add_get("/slow", slow)
app.add_subapp("/sub", sub)
spotgrace.aiohttp.run_app(app, host="127.0.0.1", port=port, stop_timeout=10, drain_delay=1.5)
