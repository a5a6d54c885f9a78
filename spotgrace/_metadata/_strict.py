"""Strict parsing of metadata answers for :mod:`spotgrace.watch`."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from ._fetch import Answer

__all__ = [
    "SourceError",
    "SourceUnavailable",
    "expect",
    "parse_object",
    "string_field",
    "timestamp",
]


class SourceError(Exception):
    """A poll failed (bad status, bad JSON, transport error); retried with backoff."""


class SourceUnavailable(SourceError):
    """The source does not exist here (an ``auto`` probe failed); polling it stops."""


def parse_object(answer: Answer, url: str) -> dict[str, Any]:
    """Strict JSON: UTF-8, no NaN/Infinity, a JSON object at the top."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        doc = json.loads(answer.body.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError):
        raise SourceError(f"{url}: answer is not valid JSON") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{url}: expected a JSON object, got {type(doc).__name__}")
    return doc


def string_field(doc: Mapping[str, Any], key: str, url: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise SourceError(f"{url}: field {key!r} missing or not a short string")
    return value


def timestamp(text: str, key: str, url: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SourceError(f"{url}: field {key!r} is not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise SourceError(f"{url}: field {key!r} has no time zone: {text!r}")
    return when.astimezone(UTC)


def expect(answer: Answer, url: str, ok: Collection[int]) -> None:
    if answer.status not in ok:
        raise SourceError(f"{url}: HTTP {answer.status}")
