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

    A path that is not a regular file (``/dev/stdout``, a named pipe, a
    symlink to one) is written to as it is: replacing it with a file would
    break it (as root, ``--html /dev/stdout`` would replace the symlink in
    ``/dev``).
    """
    try:
        mode = os.stat(path).st_mode  # through symlinks
    except OSError:
        mode = None  # not there yet (or unreachable: the atomic write will say why)
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
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
