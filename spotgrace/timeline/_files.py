"""Reading a log with a bound on each line; writing the picture atomically, owner-only."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["MAX_LINE", "bounded_lines", "write_private"]

#: The system's own special files: written through, never replaced.
_SYSTEM = ("/dev/", "/proc/self/")

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
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600).

    Written through, not replaced: a path under ``/dev/`` or ``/proc/self/``
    (``/dev/stdout``, ``/dev/fd/63`` from ``>(...)``: replacing it, as root,
    would replace the system's symlink), and a path that itself is a named
    pipe or a terminal. Anything else, a symlink included, is replaced by a
    new file, so a symlink planted in a shared directory leads nowhere.
    """
    if _write_through(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
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


def _write_through(path: Path) -> bool:
    if str(path).startswith(_SYSTEM):
        return True
    try:
        mode = os.lstat(path).st_mode  # the path itself, not where a symlink points
    except OSError:
        return False  # not there yet (or unreachable: the atomic write will say why)
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
