"""Keeping the picture a size a browser opens: how much of a big log is drawn.

A log of thousands of shutdowns, a shutdown with thousands of hooks or
100,000 in-flight counts would otherwise make a page of tens of megabytes
with an SVG a million pixels tall. The page draws the shutdowns that matter
most (those that are not clean first), a bounded number of hook rows each,
and an in-flight curve thinned to its peaks; it says what it left out. The
text timeline is not limited.
"""

from __future__ import annotations

from ._model import Shutdown

__all__ = ["MAX_DOTS", "MAX_DRAWN", "MAX_HOOK_ROWS", "MAX_POINTS", "drawn", "thin"]

#: Shutdowns drawn on one page; the others get their verdict only.
MAX_DRAWN = 100
#: Hook rows drawn per shutdown; the others are counted in one row.
MAX_HOOK_ROWS = 100
#: Points of the in-flight curve drawn per shutdown.
MAX_POINTS = 1000
#: Above this many points, the curve is drawn without a dot (and tooltip) per point.
MAX_DOTS = 200


def drawn(shutdowns: list[Shutdown], limit: int = MAX_DRAWN) -> set[int]:
    """The indexes in ``shutdowns`` to draw: the unclean ones first, then by notice time."""
    order = sorted(range(len(shutdowns)), key=lambda i: (shutdowns[i].clean, i))
    return set(order[:limit])


def thin(points: list[tuple[float, int]], limit: int = MAX_POINTS) -> list[tuple[float, int]]:
    """At most about ``limit`` of the time-sorted ``points``: the first, the last and,
    in each of ``limit // 2`` equal slices of the list, its lowest and its highest."""
    if len(points) <= limit:
        return points
    buckets = max(1, limit // 2)
    size = len(points) / buckets
    out = [points[0]]
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        if chunk:
            low = min(chunk, key=lambda p: p[1])
            high = max(chunk, key=lambda p: p[1])
            out.extend(sorted({low, high}))
    out.append(points[-1])
    return out
