"""A small HTTP/1.1 client on asyncio streams, for plain-HTTP metadata endpoints.

The early-warning poller asks the same link-local or loopback endpoint for a
few hundred bytes every few seconds. A general client (httpx) spends most of
its CPU on machinery this does not need; this one writes the request bytes and
parses the answer strictly, and keeps one idle connection per host for the
next poll. The guards are the same as :func:`spotgrace._metadata._fetch.fetch`'s:

- a total time limit per request (connect, write, read);
- a body cap, checked against ``Content-Length`` before reading and while reading;
- strict parsing: an ``HTTP/1.x`` status line, lines ending in CRLF, a head of at
  most 64 KiB with at most :data:`MAX_HEADERS`
  header lines of at most :data:`MAX_LINE` bytes, no obsolete line folding,
  a single valid ``Content-Length``, chunked or length-delimited bodies only
  (not both), no 1xx answers;
- no proxies, no redirects followed, no compression asked for;
- a kept connection is reused only if nothing unread is on it (bytes beyond an
  answer's framing, or sent while idle, are never taken for the next answer);
- plain ``http://`` only (the caller uses httpx for anything else). The host
  allow-list is checked when a source is made (:func:`spotgrace._core._hosts.check_url`).

Every failure is a :class:`~spotgrace._metadata._fetch.FetchError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._fetch import Answer, FetchError

__all__ = ["MAX_HEADERS", "MAX_LINE", "Http11Client"]

MAX_LINE = 8192
MAX_HEADERS = 100
_MADE_MAX = 32
_CHUNKED = -1
_UNTIL_EOF = -2
#: The header fields the framing needs, by their lower-case names.
_FRAMING = {
    b"content-length": "content-length",
    b"transfer-encoding": "transfer-encoding",
    b"connection": "connection",
}

_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: One header line: a token, a colon, the value without the whitespace around it
#: (no control characters but tab; obsolete line folding does not match).
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\x00-\x1f\x7f]|\t)*?)[ \t]*")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Http11Client:
    """Requests to ``http://`` URLs with keep-alive; one idle connection kept per host."""

    def __init__(self, *, user_agent: str = "spotgrace") -> None:
        self._idle: dict[tuple[str, int], _Conn] = {}
        self._user_agent = user_agent
        # The pollers repeat the same few requests: their bytes are made once.
        self._made: dict[tuple[object, ...], tuple[str, int, bytes]] = {}

    async def __aenter__(self) -> Http11Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, {}
        for _, writer in idle.values():
            writer.close()
        for _, writer in idle.values():  # the socket is closed once the loop has run this
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        time_limit: float,
        max_body: int,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        """One request taking at most ``time_limit`` s in all, a body of at most ``max_body``."""
        made_key = (method, url, content, tuple(headers.items()) if headers else ())
        made = self._made.get(made_key)
        if made is None:
            host, port, target = _split(url)
            request = _request_bytes(method, host, port, target, self._user_agent, headers, content)
            if len(self._made) >= _MADE_MAX:
                self._made.clear()
            made = self._made[made_key] = (host, port, request)
        host, port, request = made
        key = (host, port)
        try:
            async with asyncio.timeout(time_limit):
                conn = self._idle.pop(key, None)
                if conn is not None and not _reusable(conn):  # ended or spoke while idle
                    conn[1].close()
                    conn = None
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                return await self._exchange(conn, key, request, method, max_body)
        except TimeoutError:
            raise FetchError(f"{method} {url}: no answer within {time_limit:g} s") from None
        except FetchError as exc:
            raise FetchError(f"{method} {url}: {exc}") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            what = type(exc).__name__
            if isinstance(exc, asyncio.IncompleteReadError) and not exc.partial:
                what = "connection closed without an answer"
            raise FetchError(f"{method} {url}: {what}: {exc}") from None

    async def _exchange(
        self, conn: _Conn, key: tuple[str, int], request: bytes, method: str, max_body: int
    ) -> Answer:
        """One request and its answer on ``conn``; kept for the next one if it may be."""
        reader, writer = conn
        keep = False
        try:
            writer.write(request)
            if writer.transport.get_write_buffer_size():  # not all sent at once: wait
                await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:  # say what it was if it was no HTTP at all
                    _status(exc.partial.split(b"\r\n", 1)[0])
                raise
            lines = head[:-4].split(b"\r\n")
            status, keep_alive = _status(lines[0])
            fields = _headers(lines[1:])
            size = _framing(status, fields, method, max_body)
            if size >= 0:  # the common case: Content-Length (or no body)
                body = await reader.readexactly(size) if size else b""
            elif size == _CHUNKED:
                body = await _chunked(reader, max_body, _too_big(max_body))
            else:
                return Answer(status, await _until_eof(reader, max_body))
            keep = keep_alive and "close" not in _tokens(fields.get("connection", ""))
            return Answer(status, body)
        finally:
            # Kept only if nothing but this answer came: bytes beyond it (a body a 204
            # must not have, an early 408...) would be read as the next request's answer.
            if keep and _reusable(conn):
                old = self._idle.pop(key, None)
                if old is not None:
                    old[1].close()
                self._idle[key] = conn
            else:
                writer.close()


def _tokens(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def _reusable(conn: _Conn) -> bool:
    """Open, and nothing unread on it (a server that spoke unasked is not trusted again)."""
    reader, writer = conn
    buffered = getattr(reader, "_buffer", None)  # asyncio's StreamReader: no public size
    return not (
        reader.at_eof()
        or reader.exception() is not None
        or writer.is_closing()
        or buffered is None
        or len(buffered) > 0
    )


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise FetchError(f"{url!r}: only http:// URLs with a host")
    try:
        port = parts.port or 80
    except ValueError:
        raise FetchError(f"{url!r}: bad port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if any(c in target for c in "\r\n\t ") or not target.isascii():
        raise FetchError(f"{url!r}: the path must be plain ASCII without spaces")
    return parts.hostname, port, target


def _request_bytes(
    method: str,
    host: str,
    port: int,
    target: str,
    user_agent: str,
    headers: Mapping[str, str] | None,
    content: bytes | None,
) -> bytes:
    if not method.isascii() or not method.isalpha():
        raise FetchError(f"bad method {method!r}")
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {shown}" if port == 80 else f"Host: {shown}:{port}",
        f"User-Agent: {user_agent}",
        "Accept-Encoding: identity",
    ]
    for name, value in (headers or {}).items():
        if not name or not set(name.encode("latin-1", "replace")) <= _TOKEN:
            raise FetchError(f"bad header name {name!r}")
        if any((c < " " and c != "\t") or "\x7f" <= c <= "\x9f" or c > "\xff" for c in value):
            raise FetchError(f"bad value for header {name!r}")  # the value is not shown: a token
        lines.append(f"{name}: {value}")
    body = content or b""
    if body or method in ("PUT", "POST", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _status(line: bytes) -> tuple[int, bool]:
    """The status code and whether the version allows keep-alive."""
    if len(line) > MAX_LINE:
        raise FetchError("status line too long")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise FetchError(f"not an HTTP/1.x answer: {line[:40]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not b"200" <= code <= b"599":
        raise FetchError(f"bad status code {code[:10]!r}")
    return int(code), parts[0] == b"HTTP/1.1"


def _headers(lines: list[bytes]) -> dict[str, str]:
    """Check every header line; keep the ones the framing needs (lower-case names)."""
    if len(lines) > MAX_HEADERS:
        raise FetchError(f"more than {MAX_HEADERS} header lines")
    fields: dict[str, str] = {}
    for line in lines:
        if len(line) > MAX_LINE:
            raise FetchError("header line too long")
        found = _FIELD.fullmatch(line)
        if found is None:
            if line[:1] in (b" ", b"\t"):
                raise FetchError("obsolete header line folding")
            raise FetchError(f"bad header line {line[:40]!r}")
        key = _FRAMING.get(found[1].lower())
        if key is None:
            continue
        text = found[2].decode("latin-1")
        if key in fields:
            if key == "content-length" and fields[key] != text:
                raise FetchError("conflicting Content-Length headers")
            text = text if key == "content-length" else f"{fields[key]}, {text}"
        fields[key] = text
    return fields


def _too_big(max_body: int) -> str:
    return f"body larger than {max_body} bytes"


def _framing(status: int, fields: Mapping[str, str], method: str, max_body: int) -> int:
    """The body's length, or :data:`_CHUNKED`, or :data:`_UNTIL_EOF`."""
    coding = fields.get("transfer-encoding")
    length = fields.get("content-length")
    if method == "HEAD" or status in (204, 304):
        return 0
    if coding is not None:
        if length is not None or coding.lower() != "chunked":
            raise FetchError(f"unsupported framing (Transfer-Encoding: {coding[:20]!r})")
        return _CHUNKED
    if length is not None:
        if not (length.isascii() and length.isdigit()) or len(length) > 18:
            raise FetchError(f"bad Content-Length {length[:20]!r}")
        size = int(length)
        if size > max_body:
            raise FetchError(_too_big(max_body))
        return size
    return _UNTIL_EOF


async def _until_eof(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """A body without framing: until the server closes the connection (not reused)."""
    body = await reader.read(max_body + 1)
    while len(body) <= max_body and (more := await reader.read(max_body + 1 - len(body))):
        body += more
    if len(body) > max_body:
        raise FetchError(_too_big(max_body))
    return body


async def _chunked(reader: asyncio.StreamReader, max_body: int, too_big: str) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\n")
        size_text = line.split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 16
            or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise FetchError(f"bad chunk size {line[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > max_body:
            raise FetchError(too_big)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise FetchError("bad chunk end")
    for _ in range(MAX_HEADERS + 1):  # trailers, ignored
        line = await reader.readuntil(b"\n")
        if line in (b"\r\n", b"\n"):
            return bytes(body)
        if len(line) > MAX_LINE:
            raise FetchError("trailer line too long")
    raise FetchError(f"more than {MAX_HEADERS} trailer lines")
