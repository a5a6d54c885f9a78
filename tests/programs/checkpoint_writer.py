"""Fork checkpoint writers on demand, for the kill -9 torture test.

    checkpoint_writer.py file PATH
    checkpoint_writer.py redis URL HASHKEY

Reads commands on stdin, one a line:

``fork``
    fork a writer; print ``child PID``. The writer opens the store, loads the
    checkpoint ``torture``, then saves ``value(i)`` for i = loaded + 1, + 2, ...
    forever, printing ``saved I`` after each save has returned.
``reap PID``
    wait for that child; print ``reaped PID``.

The test kills each child with SIGKILL at a random moment. Forking from this
pre-imported process keeps a round to milliseconds, so hundreds of kills fit
in seconds.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from spotgrace.checkpoint import CheckpointStore, FileCheckpoint, RedisCheckpoint

KEY = "torture"


def value(i: int) -> dict[str, Any]:
    """The i-th saved value: 32 KiB, every byte a function of i."""
    return {"i": i, "blob": hashlib.sha256(str(i).encode()).hexdigest() * 512}


def open_store(argv: list[str]) -> CheckpointStore:
    """The store named on the command line."""
    if argv[0] == "file":
        return FileCheckpoint(argv[1])
    return RedisCheckpoint(argv[1], argv[2], timeout=10)


def write_forever(argv: list[str]) -> None:
    """The child: save increasing values until killed."""
    store = open_store(argv)
    current = store.load(KEY)
    i = -1 if current is None else int(current["i"])
    while True:
        i += 1
        store.save(KEY, value(i))
        say(f"saved {i}")


def say(line: str) -> None:
    """One line in one write(2): the writers and this process share the pipe."""
    os.write(1, f"{line}\n".encode())


def main() -> None:
    """Serve fork/reap commands until stdin closes."""
    argv = sys.argv[1:]
    if argv[0] == "redis":
        import redis  # noqa: F401 - imported once here, not in every child
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    write_forever(argv)
                finally:
                    os._exit(3)
            say(f"child {pid}")
        elif cmd == "reap":
            os.waitpid(int(args[0]), 0)
            say(f"reaped {args[0]}")


if __name__ == "__main__":
    main()
