"""Reading a log with a bound on each line; writing the picture atomically, owner-only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["MAX_LINE", "bounded_lines", "write_private"]

#: The longest line read whole (characters). A spotgrace event, stacks
#: included, is far shorter; the rest of a longer line is skipped unread.
MAX_LINE = 4 * 1024 * 1024


def bounded_lines(f: TextIO, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of ``f``, each cut to ``limit`` characters, reading at most that much at once.

    The cut line is still yielded (its JSON is then incomplete: counted as
    malformed), so the line numbers of the lines after it stay right.
    """
    while True:
        line = f.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith("\n"):
            while True:  # skip the rest of the over-long line
                rest = f.readline(limit)
                if not rest or rest.endswith("\n"):
                    break
        yield line


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
