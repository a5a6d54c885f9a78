"""Bounded HTTP for the metadata clients: short total timeout, capped body.

Both helpers return an :class:`Answer` or raise :class:`FetchError`; no other
exception escapes. The client must be created by :func:`async_client` /
:func:`sync_client` (no proxies from the environment, no redirects).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

__all__ = ["Answer", "FetchError", "async_client", "fetch", "fetch_sync", "sync_client"]

#: Metadata documents are a few KiB; 64 KiB is plenty and bounds memory.
DEFAULT_MAX_BODY = 64 * 1024


class FetchError(Exception):
    """The request failed: transport error, timeout, or a body over the limit."""


@dataclass(frozen=True)
class Answer:
    """A complete, size-checked HTTP answer."""

    status: int
    body: bytes


def _client_kwargs(timeout: float, *, keepalive: bool) -> dict[str, object]:
    # trust_env=False: an HTTP(S)_PROXY meant for the internet must never see
    # metadata requests (nor IMDS tokens). The pollers keep connections alive
    # between polls (it saves a third of the CPU per poll); one that broke is
    # dropped by httpx and the next poll opens a new one.
    pool = 4 if keepalive else 0
    return {
        "trust_env": False,
        "follow_redirects": False,
        "timeout": httpx.Timeout(timeout),
        "limits": httpx.Limits(max_keepalive_connections=pool, keepalive_expiry=60),
        "headers": {"Accept-Encoding": "identity", "User-Agent": "spotgrace"},
    }


def async_client(timeout: float) -> httpx.AsyncClient:
    """An AsyncClient configured for metadata endpoints."""
    return httpx.AsyncClient(**_client_kwargs(timeout, keepalive=True))  # type: ignore[arg-type]


def sync_client(timeout: float) -> httpx.Client:
    """A Client configured for metadata endpoints (no keep-alive: calls are rare)."""
    return httpx.Client(**_client_kwargs(timeout, keepalive=False))  # type: ignore[arg-type]


def _too_big(response: httpx.Response, max_body: int) -> bool:
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > max_body


async def fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    time_limit: float,
    max_body: int = DEFAULT_MAX_BODY,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> Answer:
    """One request taking at most ``time_limit`` s in all, with a body of at most ``max_body``."""
    try:
        async with asyncio.timeout(time_limit):
            async with client.stream(method, url, headers=headers, content=content) as resp:
                if _too_big(resp, max_body):
                    raise FetchError(f"{method} {url}: body larger than {max_body} bytes")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > max_body:
                        raise FetchError(f"{method} {url}: body larger than {max_body} bytes")
                return Answer(resp.status_code, bytes(body))
    except TimeoutError:
        raise FetchError(f"{method} {url}: no answer within {time_limit:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{method} {url}: {type(exc).__name__}: {exc}") from None


def fetch_sync(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    time_limit: float,
    max_body: int = DEFAULT_MAX_BODY,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> Answer:
    """:func:`fetch` for synchronous callers (the time limit is checked per chunk)."""
    deadline = time.monotonic() + time_limit
    try:
        with client.stream(method, url, headers=headers, content=content) as resp:
            if _too_big(resp, max_body):
                raise FetchError(f"{method} {url}: body larger than {max_body} bytes")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_body:
                    raise FetchError(f"{method} {url}: body larger than {max_body} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"{method} {url}: no answer within {time_limit:g} s")
            return Answer(resp.status_code, bytes(body))
    except httpx.HTTPError as exc:
        raise FetchError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
