"""The small keep-alive HTTP/1.1 client of the metadata poller, against real raw servers.

Each test starts an asyncio server on 127.0.0.1 that answers with exact bytes,
so the guards (time limit, body cap, strict parsing) meet what a real
misbehaving endpoint sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from spotgrace._metadata._fetch import FetchError
from spotgrace._metadata._http11 import Http11Client

pytestmark = pytest.mark.asyncio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Raw:
    """A server answering each request with ``answer(request_head)``; counts connections."""

    def __init__(self, answer: Callable[[bytes], bytes | None], *, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.connections = 0
        self.heads: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"content-length: " in head.lower():
                    size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(size)
                self.heads.append(head)
                out = self.answer(head)
                if out is None:  # never answer
                    await self.done.wait()
                    return
                writer.write(out)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw(
    answer: Callable[[bytes], bytes | None], *, close: bool = False
) -> AsyncIterator[tuple[Raw, str]]:
    server = Raw(answer, close=close)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.done.set()
        listener.close()
        for writer in server.writers:
            writer.close()
        await listener.wait_closed()
        await asyncio.sleep(0.01)  # the transports close


async def get(client: Http11Client, url: str, **kw: object) -> tuple[int, bytes]:
    answer = await client.fetch(
        "GET", url, time_limit=kw.pop("time_limit", 2.0), max_body=kw.pop("max_body", 1024), **kw
    )  # type: ignore[arg-type]
    return answer.status, answer.body


async def test_keep_alive_reuses_one_connection_and_sends_plain_headers() -> None:
    async with raw(lambda head: OK) as (server, url), Http11Client() as client:
        for _ in range(3):
            assert await get(client, url + "/x?y=1", headers={"X-Token": "t"}) == (200, b"ok")
        answer = await client.fetch("PUT", url + "/token", time_limit=2, max_body=64, content=b"")
        assert answer.status == 200
    assert server.connections == 1
    first = server.heads[0].decode()
    assert first.startswith("GET /x?y=1 HTTP/1.1\r\n")
    assert "\r\nX-Token: t\r\n" in first
    assert "Accept-Encoding: identity" in first
    assert "Content-Length: 0" in server.heads[3].decode()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async with raw(lambda head: OK, close=True) as (server, url), Http11Client() as client:
        for _ in range(3):
            assert await get(client, url) == (200, b"ok")
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_connection_close_and_http10_are_not_reused() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]
    for out in answers:
        async with raw(lambda head, out=out: out) as (server, url), Http11Client() as client:
            assert await get(client, url) == (200, b"ok")
            assert await get(client, url) == (200, b"ok")
        assert server.connections == 2


async def test_chunked_and_until_eof_bodies_are_read() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    )
    async with raw(lambda head: chunked) as (_, url), Http11Client() as client:
        assert await get(client, url) == (200, b"abcde")
        assert await get(client, url) == (200, b"abcde")
    eof = b"HTTP/1.1 404 Not Found\r\n\r\nnothing here"
    async with raw(lambda head: eof, close=True) as (_, url), Http11Client() as client:
        assert await get(client, url) == (404, b"nothing here")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, "larger than 1024"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n1\r\nx\r\n0\r\n\r\n",
            "larger than 1024",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000, "larger than 1024"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\nok", "folding"),
        (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported framing"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            "unsupported framing",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "bad status code"),
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x answer"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 101 + b"\r\n", "more than 100 header lines"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "IncompleteReadError"),
        (b"", "connection closed without an answer"),
    ],
)
async def test_malformed_or_oversized_answers_are_fetch_errors(answer: bytes, message: str) -> None:
    async with raw(lambda head: answer, close=True) as (_, url), Http11Client() as client:
        with pytest.raises(FetchError, match=message) as caught:
            await get(client, url + "/p")
    assert str(caught.value).startswith(f"GET {url}/p: ")


async def test_the_time_limit_covers_the_whole_request() -> None:
    async with raw(lambda head: None) as (_, url), Http11Client() as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(FetchError, match=r"no answer within 0\.3 s"):
            await get(client, url, time_limit=0.3)
        assert asyncio.get_running_loop().time() - started < 2.0


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://127.0.0.1/x", None),
        ("http:///nohost", None),
        ("http://127.0.0.1/a b", None),
        ("http://127.0.0.1/x", {"X-Token": "a\r\nInjected: yes"}),
        ("http://127.0.0.1/x", {"Bad Name": "v"}),
    ],
)
async def test_bad_requests_are_refused_before_anything_is_sent(
    url: str, headers: dict[str, str] | None
) -> None:
    async with Http11Client() as client:
        with pytest.raises(FetchError):
            await client.fetch("GET", url, time_limit=1, max_body=10, headers=headers)


async def test_refused_connection_is_a_fetch_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with Http11Client() as client:
        with pytest.raises(FetchError, match="ConnectionRefusedError"):
            await get(client, f"http://127.0.0.1:{port}/")
