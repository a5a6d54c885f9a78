"""A raw HTTP/1.1 keep-alive load client that counts what happens to every request.

It speaks HTTP/1.1 over asyncio streams with no client library in between, so
nothing retries or hides a lost request. Each of ``connections`` workers keeps
one connection open and sends ``GET /work?ms=N`` (N drawn from
``sleep_ms``) back to back, reusing the connection until the server says
``Connection: close`` or closes it. Every request ends in exactly one bucket:

``ok``        a complete 200 response
``rejected``  a complete 503 response (what a draining spotgrace server answers)
``other``     a complete response with any other status
``refused``   the connection could not be opened (the listener is closed)
``dropped``   the request was written but no complete response came back

A worker whose connect is refused stops: from its point of view the server is
gone, which is what a load balancer would see too. Used by ``bench/zero_drop.py``
and by the tests of ``spotgrace.aiohttp`` and ``spotgrace.asgi``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

__all__ = ["LoadResult", "Response", "fetch", "read_response", "run_load"]


@dataclass
class Response:
    """One complete HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes
    received: float  # time.monotonic() when the last byte arrived

    @property
    def close(self) -> bool:
        """The server announced it closes the connection after this response."""
        return self.headers.get("connection", "").lower() == "close"


@dataclass
class LoadResult:
    """The counts of one load run (see the module docstring for the buckets)."""

    ok: int = 0
    rejected: int = 0
    other: int = 0
    refused: int = 0
    dropped: int = 0
    connections: int = 0  # connections opened
    last_response: float = 0.0  # monotonic time of the last complete response
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        """Requests written (every bucket except ``refused``)."""
        return self.ok + self.rejected + self.other + self.dropped

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return {
            "ok": self.ok,
            "503": self.rejected,
            "other": self.other,
            "refused": self.refused,
            "dropped": self.dropped,
        }


class IncompleteResponse(Exception):
    """The connection ended before a complete response was read."""


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """Read one HTTP/1.1 response (Content-Length, chunked, or until EOF)."""
    try:
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        else:
            body = await reader.read()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        raise IncompleteResponse(repr(exc)) from exc
    except OSError as exc:  # ECONNRESET and friends
        raise IncompleteResponse(repr(exc)) from exc
    return Response(status, headers, body, time.monotonic())


def request_bytes(path: str, *, host: str = "127.0.0.1", close: bool = False) -> bytes:
    """The bytes of a ``GET path`` HTTP/1.1 request."""
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("ascii")


async def fetch(host: str, port: int, path: str, *, limit: float = 5.0) -> Response:
    """One request on a fresh connection (``Connection: close``)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    try:
        writer.write(request_bytes(path, host=host, close=True))
        return await asyncio.wait_for(read_response(reader), limit)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _worker(
    result: LoadResult,
    host: str,
    port: int,
    stop: asyncio.Event,
    rng: random.Random,
    sleep_ms: tuple[int, int],
    path: str,
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while not stop.is_set():
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    result.refused += 1
                    return
                result.connections += 1
            assert reader is not None
            target = path.format(ms=rng.randint(*sleep_ms))
            try:
                writer.write(request_bytes(target, host=host))
                response = await read_response(reader)
            except (IncompleteResponse, OSError) as exc:
                result.dropped += 1
                if len(result.errors) < 20:
                    result.errors.append(f"{time.monotonic():.3f} {target} {exc!r}")
                writer.close()
                writer = None
                continue
            result.last_response = max(result.last_response, response.received)
            if response.status == 200:
                result.ok += 1
            elif response.status == 503:
                result.rejected += 1
            else:
                result.other += 1
            if response.close:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def run_load(
    host: str,
    port: int,
    *,
    connections: int = 40,
    sleep_ms: tuple[int, int] = (50, 400),
    path: str = "/work?ms={ms}",
    stop: asyncio.Event | None = None,
    max_seconds: float = 30.0,
    seed: int = 0,
) -> LoadResult:
    """Run ``connections`` keep-alive workers until ``stop`` is set or every worker ended.

    Workers end when their connect is refused. ``max_seconds`` bounds the whole
    run: workers still waiting then are cancelled and their request counted as
    dropped (it was written and never answered).
    """
    result = LoadResult()
    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(
            _worker(result, host, port, stop, random.Random(rng.random()), sleep_ms, path)
        )
        for _ in range(connections)
    ]
    done, pending = await asyncio.wait(tasks, timeout=max_seconds)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    result.dropped += len(pending)
    for task in done:
        if task.exception() is not None:
            result.errors.append(repr(task.exception()))
    return result
