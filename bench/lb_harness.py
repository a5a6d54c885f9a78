"""Two replicas behind HAProxy set up like an ALB target group; hey as the load; a rolling restart.

Shared by ``bench/lb.py`` and ``tests/test_lb.py``. HAProxy and hey come from
Debian's packages (``scripts/dev.py`` installs them as root when missing).

The balancer: round robin over two replicas; health check ``GET /readyz``
every ``inter`` seconds, ``fall`` failures mark a replica down, ``rise``
successes bring it back (an ALB target group: interval, unhealthy and healthy
thresholds); keep-alive to the replicas with ``http-reuse always``;
``retries 0`` and no ``option redispatch``: a request that fails on a replica
fails for the client, as on an ALB.

One run: both replicas up, hey at a bounded rate for ``duration`` seconds;
``sigterm_at`` seconds in, replica 1 gets SIGTERM; once it is gone it is
started again (a rolling restart). Every non-2xx answer and every connection
error hey saw is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Server, free_port, start_server

__all__ = ["LbResult", "Replica", "haproxy_config", "lb_run", "parse_hey", "tools_missing"]


def tools_missing() -> list[str]:
    """The binaries this harness needs that are not on PATH."""
    return [name for name in ("haproxy", "hey") if shutil.which(name) is None]


@dataclass(frozen=True)
class Replica:
    """How to start one replica: a Python command line (``{port}`` is replaced) and its env."""

    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout: float = 30.0  # the platform's: the replica must be gone before it


@dataclass
class LbResult:
    """What one run saw."""

    ok: int  # 2xx responses
    non_2xx: dict[int, int]  # status -> count
    errors: dict[str, int]  # hey's error text -> count (connection resets, EOF...)
    exit_code: int | None  # of the replica that got SIGTERM
    exit_seconds: float  # SIGTERM -> that replica gone
    restarted: bool
    hey_output: str
    replica_output: str

    @property
    def client_errors(self) -> int:
        """Every answer the client saw that was not 2xx, plus every failed request."""
        return sum(self.non_2xx.values()) + sum(self.errors.values())

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"ok={self.ok} non2xx={self.non_2xx} errors={sum(self.errors.values())} "
            f"exit={self.exit_code} gone_after={self.exit_seconds:.2f}s"
        )


def haproxy_config(
    front: int, backends: Sequence[int], *, inter: float, fall: int, rise: int, stats: str
) -> str:
    """An HAProxy configuration that behaves like an ALB target group (see the module docstring)."""
    servers = "\n".join(
        f"  server r{i + 1} 127.0.0.1:{port} check" for i, port in enumerate(backends)
    )
    return f"""\
global
  maxconn 4096
  stats socket {stats} mode 600 level admin

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  timeout check 2s
  retries 0
  option http-keep-alive

frontend fe
  bind 127.0.0.1:{front}
  default_backend be

backend be
  balance roundrobin
  http-reuse always
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter {round(inter * 1000)}ms fall {fall} rise {rise}
{servers}
"""


_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.M)


def parse_hey(output: str) -> tuple[int, dict[int, int], dict[str, int]]:
    """(2xx count, non-2xx by status, errors by text) from hey's summary."""
    ok, non_2xx, errors = 0, {}, {}
    status_part, _, error_part = output.partition("Error distribution:")
    for code, count in _STATUS.findall(status_part):
        if 200 <= int(code) < 300:
            ok += int(count)
        else:
            non_2xx[int(code)] = non_2xx.get(int(code), 0) + int(count)
    for count, text in _ERROR.findall(error_part):
        errors[text.strip()] = errors.get(text.strip(), 0) + int(count)
    if "Status code distribution:" not in output:
        raise ValueError(f"not hey's summary:\n{output}")
    return ok, non_2xx, errors


async def _servers_up(stats: str) -> dict[str, str]:
    reader, writer = await asyncio.open_unix_connection(stats)
    writer.write(b"show stat\n")
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    lines = raw.splitlines()
    header = lines[0].lstrip("# ").split(",")
    name, status = header.index("svname"), header.index("status")
    out = {}
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > status and cols[name].startswith("r"):
            out[cols[name]] = cols[status]
    return out


async def _wait_up(stats: str, names: set[str], limit: float) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError, IndexError):
            states = await _servers_up(stats)
            if all(states.get(n, "").startswith("UP") for n in names):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"HAProxy did not see {sorted(names)} up within {limit} s")


async def _warm(port: int, path: str, limit: float = 30.0) -> None:
    """Wait until the replica answers 8 concurrent requests fast, twice: every worker booted."""
    from bench.loadclient import read_response, request_bytes

    async def one() -> float:
        t = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_bytes(path, close=True))
            await read_response(reader)
        finally:
            writer.close()
        return time.monotonic() - t

    end, fast = time.monotonic() + limit, 0
    while time.monotonic() < end and fast < 2:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            times = await asyncio.gather(*(one() for _ in range(8)))
            fast = fast + 1 if max(times) < 0.25 else 0
        await asyncio.sleep(0.1)


async def _start(replica: Replica, port: int) -> Server:
    argv = [a.format(port=port) for a in replica.argv]
    env = {k: v.format(port=port) for k, v in replica.env.items()}
    return await start_server(argv, port, env=env, limit=60)


async def lb_run(
    replica: Replica,
    *,
    inter: float = 1.0,
    fall: int = 2,
    rise: int = 2,
    duration: float = 8.0,
    sigterm_at: float = 2.0,
    concurrency: int = 10,
    rate: int = 300,
    path: str = "/work?ms=20",
    method: str = "GET",
) -> LbResult:
    """One rolling-restart run through HAProxy (see the module docstring)."""
    if missing := tools_missing():
        raise RuntimeError(f"missing {', '.join(missing)}: run scripts/dev.py as root")
    ports = [free_port(), free_port()]
    front = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="spotgrace-lb-"))
    stats = str(tmp / "stats.sock")
    (tmp / "haproxy.cfg").write_text(
        haproxy_config(front, ports, inter=inter, fall=fall, rise=rise, stats=stats)
    )
    replicas = list(await asyncio.gather(*(_start(replica, p) for p in ports)))
    await asyncio.gather(*(_warm(p, "/readyz") for p in ports))
    log = os.environ.get("SPOTGRACE_LB_LOG")  # a file for HAProxy's request log (debugging)
    if log:
        cfg = (tmp / "haproxy.cfg").read_text()
        cfg = cfg.replace("global\n", "global\n  log stdout format raw local0\n", 1)
        cfg = cfg.replace("defaults\n", "defaults\n  log global\n  option httplog\n", 1)
        (tmp / "haproxy.cfg").write_text(cfg)
    haproxy = await asyncio.create_subprocess_exec(
        "haproxy", "-f", str(tmp / "haproxy.cfg"), "-db",
        stdout=open(log, "ab") if log else asyncio.subprocess.DEVNULL,  # noqa: SIM115, ASYNC230
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    hey: asyncio.subprocess.Process | None = None
    try:
        await _wait_up(stats, {"r1", "r2"}, limit=10 + rise * inter * 2)
        qps = max(1, rate // concurrency)
        hey = await asyncio.create_subprocess_exec(
            "hey", "-z", f"{duration}s", "-c", str(concurrency), "-q", str(qps), "-t", "10",
            "-m", method, f"http://127.0.0.1:{front}{path}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        hey_out = asyncio.create_task(hey.communicate())
        await asyncio.sleep(sigterm_at)
        victim = replicas[0]
        t0 = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        code = await victim.wait(replica.stop_timeout + 5)
        gone = time.monotonic() - t0
        replica_output = await victim.output()
        restarted = False
        if not hey_out.done():
            replicas[0] = await _start(replica, ports[0])
            restarted = True
        out = (await hey_out)[0].decode(errors="replace")
        ok, non_2xx, errors = parse_hey(out)
        return LbResult(ok, non_2xx, errors, code, gone, restarted, out, replica_output)
    finally:
        if hey is not None and hey.returncode is None:
            hey.kill()
            await hey.wait()
        for server in replicas:
            if server.proc.returncode is None:
                server.proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(server.wait(replica.stop_timeout + 5) for server in replicas))
        with contextlib.suppress(ProcessLookupError):
            haproxy.terminate()
        await haproxy.wait()
        shutil.rmtree(tmp, ignore_errors=True)
