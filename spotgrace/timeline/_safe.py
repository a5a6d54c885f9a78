"""Making a log's strings safe to show: in a terminal, in the HTML page, in a UTF-8 file.

A log line is written by whatever wrote the log, so the strings in an event
(hook names, reasons, errors, even keys) may carry terminal escape sequences
(``\\x1b]0;...``: retitle the window, clear the screen), newlines that forge
a line of output (``\\nverdict: CLEAN``), bidirectional overrides that show
text in another order than it is, lone surrogates that no UTF-8 file can
hold, a megabyte of text, or a nesting deep enough to exhaust the stack.
:func:`clean_doc` returns a copy where every such character is spelled out
(``\\x1b``, ``\\n``, ``\\u202e``; a lone surrogate becomes U+FFFD), every
string is cut to :data:`MAX_STRING` characters, and a document nested deeper
than :data:`MAX_DEPTH` is refused.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_STRING", "clean_doc", "clean_text", "needs_cleaning"]

#: The longest string shown; the rest is replaced by a count.
MAX_STRING = 2000
#: The deepest nesting of lists and objects accepted in one event.
MAX_DEPTH = 32

#: C0 and C1 controls, DEL, bidirectional controls and lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: On a raw line: anything that could decode to an unsafe or non-ASCII character.
_SUSPECT = re.compile(r"[^\x20-\x7e]|\\u")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def needs_cleaning(line: str) -> bool:
    """Whether the event decoded from ``line`` may hold something :func:`clean_doc` changes.

    False only for a short, printable-ASCII line without ``\\u`` escapes and
    with too few brackets to nest deeper than :data:`MAX_DEPTH`: the common
    case, which then skips the walk.
    """
    return (
        len(line) > MAX_STRING
        or line.count("[") + line.count("{") > MAX_DEPTH
        or _SUSPECT.search(line) is not None
    )


def _spell(match: re.Match[str]) -> str:
    c = match.group()
    if "\ud800" <= c <= "\udfff":
        return "\ufffd"
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def clean_text(text: str) -> str:
    """``text`` cut to :data:`MAX_STRING` characters, unsafe characters spelled out."""
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING] + f"... ({len(text) - MAX_STRING} more characters)"
    return _UNSAFE.sub(_spell, text)


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise _TooDeep
        return {clean_text(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise _TooDeep
        return [_clean(v, depth + 1) for v in value]
    return value


class _TooDeep(Exception):
    pass


def clean_doc(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A cleaned copy of the JSON object ``doc``, or None when it is nested too deep."""
    try:
        cleaned: dict[str, Any] = _clean(doc, 0)
    except _TooDeep:
        return None
    return cleaned
