"""Start a benchmark server as a real subprocess, load it, SIGTERM it, count.

Shared by ``bench/zero_drop.py`` and the HTTP tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadclient import LoadResult, run_load

__all__ = ["Run", "Server", "free_port", "sigterm_under_load", "start_server"]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server subprocess."""

    proc: asyncio.subprocess.Process
    port: int
    exited_at: float = 0.0  # monotonic time the process was seen gone
    chunks: list[bytes] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def wait(self, limit: float) -> int:
        """Wait for the exit (kill it after ``limit`` s); returns the exit code."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), limit)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await asyncio.gather(*self.tasks)
        self.exited_at = self.exited_at or time.monotonic()
        return code

    async def output(self) -> str:
        """Everything the process wrote to stdout and stderr (complete once it exited)."""
        await asyncio.sleep(0)
        return b"".join(self.chunks).decode(errors="replace")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.chunks.append(chunk)


async def start_server(
    argv: Sequence[str], port: int, *, env: dict[str, str] | None = None, limit: float = 30.0
) -> Server:
    """Start ``argv`` (a Python script and its arguments); return once ``port`` accepts."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=full_env,
    )
    server = Server(proc, port)
    reader = asyncio.create_task(server._read())
    deadline = time.monotonic() + limit
    while True:
        if proc.returncode is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            await reader
            raise RuntimeError(f"{argv} did not start listening:\n{await server.output()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break

    async def _watch() -> None:
        await proc.wait()
        server.exited_at = time.monotonic()
        await reader

    server.tasks = [reader, asyncio.create_task(_watch())]
    return server


@dataclass
class Run:
    """The outcome of one SIGTERM-under-load run."""

    load: LoadResult
    exit_code: int
    sigterm_at: float
    exited_at: float
    output: str  # what the process wrote to stdout and stderr

    @property
    def exit_after_last_response(self) -> float:
        """Seconds from the last complete response to the process being gone."""
        return self.exited_at - self.load.last_response


async def sigterm_under_load(
    argv: Sequence[str],
    *,
    connections: int = 40,
    sleep_ms: tuple[int, int] = (50, 400),
    sigterm_after: float = 1.5,
    exit_timeout: float = 20.0,
    env: dict[str, str] | None = None,
    seed: int = 0,
    port: int | None = None,
) -> Run:
    """Start the server, load it, SIGTERM it ``sigterm_after`` s in, count everything.

    ``argv`` and the values of ``env`` may contain ``{port}``, replaced by a free port.
    """
    port = port or free_port()
    env = {k: v.format(port=port) for k, v in (env or {}).items()}
    server = await start_server([a.format(port=port) for a in argv], port, env=env)
    stop = asyncio.Event()
    load = asyncio.create_task(
        run_load(
            "127.0.0.1",
            port,
            connections=connections,
            sleep_ms=sleep_ms,
            stop=stop,
            max_seconds=sigterm_after + exit_timeout + 5,
            seed=seed,
        )
    )
    await asyncio.sleep(sigterm_after)
    sigterm_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = await server.wait(exit_timeout)
    stop.set()
    result = await load
    return Run(result, code, sigterm_at, server.exited_at, await server.output())
