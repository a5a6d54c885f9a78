"""Review of the keep-alive HTTP/1.1 poller client: what a reused connection must not do.

Real asyncio servers on 127.0.0.1 answer with exact bytes: a server that speaks
while the connection is idle (an early ``408``, a body a ``204`` must not have)
must not have those bytes read as the next request's answer; a server that
closes a kept connection as the next request goes out fails that poll only; a
``Content-Length`` that only Unicode calls digits, or a header value that cannot
be sent, is a :class:`FetchError`, not a ``ValueError``/``UnicodeEncodeError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from spotgrace._metadata._fetch import FetchError
from spotgrace._metadata._http11 import Http11Client

pytestmark = pytest.mark.asyncio

_Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: _Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """Serve ``handler``; yields the base URL and a list with the connection count."""
    count = [0]
    writers: list[asyncio.StreamWriter] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/x", count
    finally:
        listener.close()
        for writer in writers:
            writer.close()
        await listener.wait_closed()


async def get(client: Http11Client, url: str) -> tuple[int, bytes]:
    answer = await client.fetch("GET", url, time_limit=3.0, max_body=1024)
    return answer.status, answer.body


async def test_an_answer_sent_while_idle_is_not_taken_for_the_next_one() -> None:
    """The server answers, then sends a 408 on the idle connection (its idle timeout)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client closes it

    async with serving(handler) as (url, count), Http11Client() as client:
        assert await get(client, url) == (200, b"first")
        await asyncio.sleep(0.3)  # the 408 arrives while idle
        assert await get(client, url) == (200, b"first")  # a new connection's answer
        assert count[0] == 2


async def test_bytes_beyond_the_framed_answer_end_the_connection() -> None:
    """A 204 with a body: the stray bytes would be the next request's 'answer'."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
            )
            await writer.drain()

    async with serving(handler) as (url, count), Http11Client() as client:
        for _ in range(3):
            assert await get(client, url) == (204, b"")
            await asyncio.sleep(0.05)
        assert count[0] == 3


async def test_a_kept_connection_closed_as_the_request_goes_out_fails_that_poll_only() -> None:
    """The server's idle timeout fires as the next poll arrives: not retried (a dropped
    request is indistinguishable from it, and counts as an error); the next poll is fine."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: closed without an answer

    async with serving(handler) as (url, count), Http11Client() as client:
        assert await get(client, url) == (200, b"ok")
        with pytest.raises(FetchError, match="closed without an answer"):
            await get(client, url)
        assert await get(client, url) == (200, b"ok")
        assert count[0] == 2


async def test_a_new_connection_closed_without_an_answer_is_still_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with serving(handler) as (url, count), Http11Client() as client:
        with pytest.raises(FetchError, match="closed without an answer"):
            await get(client, url)
        assert count[0] == 1  # not retried: the connection was not a reused one


@pytest.mark.parametrize("length", ["\xb2", "\xb3", "\xb9"])
async def test_a_content_length_of_non_ascii_digits_is_a_fetch_error(length: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nok".encode("latin-1"))
        await writer.drain()

    async with serving(handler) as (url, _), Http11Client() as client:
        with pytest.raises(FetchError):
            await get(client, url)


async def test_connection_close_among_other_tokens_is_honoured() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    async with serving(handler) as (url, count), Http11Client() as client:
        for _ in range(2):
            assert await get(client, url) == (200, b"ok")
        assert count[0] == 2


@pytest.mark.parametrize("value", ["\u20ac", "a\x0bb", "a\x7fb", "a\rb"])
async def test_a_header_value_that_cannot_be_sent_is_a_fetch_error(value: str) -> None:
    """E.g. a token from a broken endpoint: refused before anything is sent, as a FetchError."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serving(handler) as (url, count), Http11Client() as client:
        with pytest.raises(FetchError, match="bad value for header 'X-Token'"):
            await client.fetch("GET", url, time_limit=2, max_body=64, headers={"X-Token": value})
        assert count[0] == 0
