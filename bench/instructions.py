"""Instructions per request, plain server vs spotgrace: a deterministic overhead measure.

    python bench/instructions.py                      # every pair, 2000 requests, 10-20 minutes
    python bench/instructions.py --groups aiohttp     # one group
    python bench/instructions.py --quick              # 300 requests, 1 repetition
    python bench/instructions.py --tree /tmp/before   # the servers of another source tree
    python bench/instructions.py --functions 25       # also where the difference goes (C level)

wrk's requests/s on a shared machine vary by +-20% from round to round; an
instruction count does not. Each server of a pair (the same ones as
``bench/overhead.py``: ``bench/servers.py`` and ``overhead.py --serve``) runs
as a real subprocess on 127.0.0.1 under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``), and a client in this process sends ``GET /hello`` on
keep-alive connections, one request at a time per connection (``--connections``
connections in lock step: each sends one request, then every response is read).

Start-up and the client's timing are kept out of the figure: after a warm-up
(``--warmup`` requests) callgrind's counters are zeroed (``callgrind_control
-z``), then ``N`` requests are served and the counters dumped (``-d``), then
``2N`` more and dumped again. The dump of ``2N`` minus the dump of ``N``,
divided by ``N``, is the count per request: what the control commands cost, or
anything else the same in both windows, cancels out. What the server does on
its own while time passes (uvicorn's tick every 0.1 s, timers) does not cancel:
it is measured separately (counters over ``--idle`` seconds with no request),
reported as instructions per second, and subtracted in proportion to the two
windows' wall times (under valgrind, uvicorn's tick is 1-3% of a request's
count, aiohttp's idle cost nil; the uncorrected figure is in the JSON). Repeated ``--reps`` times; the table gives
the median and the range, which shows how deterministic it is.

Counts are of the whole server process (every thread), in the interpreter and
C extensions; callgrind cannot see Python functions, only the C functions the
interpreter runs for them. ``--functions K`` lists, for each pair, the K C
functions whose self cost per request grows most from plain to spotgrace
(``callgrind_annotate`` of the last ``2N`` dump of each side); to find the
Python code behind it, profile in process.

Writes ``bench/results/instructions.{md,json}`` and keeps the dumps in
``bench/results/callgrind/`` (``callgrind_annotate FILE`` reads one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"

#: group -> (plain, spotgrace...): (label, argv relative to the tree: script, arguments)
GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "aiohttp": [
        ("plain aiohttp", ["bench/servers.py", "plain-aiohttp"]),
        ("spotgrace.aiohttp", ["bench/servers.py", "grace-aiohttp"]),
    ],
    "uvicorn": [
        ("plain uvicorn (Starlette)", ["bench/servers.py", "plain-uvicorn"]),
        ("spotgrace.asgi.serve (Starlette)", ["bench/servers.py", "grace-asgi"]),
    ],
    "bare": [
        ("bare ASGI, plain uvicorn", ["bench/overhead.py", "--serve", "bare-plain"]),
        ("bare ASGI, spotgrace.asgi.serve", ["bench/overhead.py", "--serve", "bare-grace"]),
        ("bare ASGI, GraceMiddleware only", ["bench/overhead.py", "--serve", "bare-middleware"]),
    ],
    # WSGI in one process: waitress (two task threads), keep-alive (bench/wsgi_servers.py).
    "wsgi": [
        ("bare WSGI, plain waitress", ["bench/wsgi_servers.py", "plain-bare"]),
        ("bare WSGI, spotgrace.wsgi.GraceMiddleware", ["bench/wsgi_servers.py", "grace-bare"]),
    ],
    "flask": [
        ("Flask, plain waitress", ["bench/wsgi_servers.py", "plain-flask"]),
        ("Flask, spotgrace.wsgi.GraceMiddleware", ["bench/wsgi_servers.py", "grace-flask"]),
    ],
    # gunicorn, one sync worker: a connection per request, the worker's counters only.
    "gunicorn": [
        ("bare WSGI, plain gunicorn sync", ["bench/wsgi_servers.py", "gunicorn-plain-bare"]),
        ("bare WSGI, spotgrace.gunicorn sync", ["bench/wsgi_servers.py", "gunicorn-grace-bare"]),
    ],
    "gunicorn-flask": [
        ("Flask, plain gunicorn sync", ["bench/wsgi_servers.py", "gunicorn-plain-flask"]),
        ("Flask, spotgrace.gunicorn sync", ["bench/wsgi_servers.py", "gunicorn-grace-flask"]),
    ],
    # gunicorn, one uvicorn worker (keep-alive): spotgrace's worker and GraceMiddleware(app).
    "gunicorn-uvicorn": [
        ("bare ASGI, plain gunicorn + UvicornWorker", ["bench/gunicorn_asgi.py", "plain"]),
        ("bare ASGI, spotgrace.gunicorn + its UvicornWorker", ["bench/gunicorn_asgi.py", "grace"]),
    ],
}

#: Groups whose server is a pre-fork master with one worker that serves. valgrind's
#: gdbserver is not in a forked child, so callgrind_control cannot reach the worker: instead
#: the worker exits by itself after W + N, then W + 2N requests (gunicorn's
#: ``--max-requests``), one server per window, and its counters from fork to exit (callgrind
#: writes them at its exit, under its own pid) are compared. gunicorn's sync worker closes
#: every connection: the client opens one per request (its accept and close count too).
PREFORK = {"gunicorn", "gunicorn-flask", "gunicorn-uvicorn"}
#: Pre-fork groups whose worker keeps connections alive: one connection for every request.
KEEPALIVE = {"gunicorn-uvicorn"}

REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: instructions\r\n\r\n"


# ------------------------------------------------------------------ client


class Client:
    """``connections`` keep-alive connections sending ``GET /hello`` in lock step."""

    def __init__(self, port: int, connections: int, *, reconnect: bool = False) -> None:
        self.port, self.reconnect = port, reconnect
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
        self.buffers = [b""] * connections

    def run(self, requests: int) -> None:
        """Serve ``requests`` (rounded up to a multiple of the connections); 200s only."""
        n = len(self.socks)
        if self.reconnect:  # the server closes after each response: a connection per request
            for _ in range(-(-requests // n)):
                self.close()
                self.socks = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(n)]
                self.buffers = [b""] * n
                for sock in self.socks:
                    sock.sendall(REQUEST)
                for i, sock in enumerate(self.socks):
                    self._read(i, sock)
            return
        for _ in range(-(-requests // n)):
            for sock in self.socks:
                sock.sendall(REQUEST)
            for i, sock in enumerate(self.socks):
                self._read(i, sock)

    def _read(self, i: int, sock: socket.socket) -> None:
        data = self.buffers[i]
        while b"\r\n\r\n" not in data:
            data += self._recv(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if status != b"200" or match is None:
            raise RuntimeError(f"unexpected response: {head!r}")
        length = int(match.group(1))
        while len(rest) < length:
            rest += self._recv(sock)
        self.buffers[i] = rest[length:]

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


# ------------------------------------------------------------------ server


@dataclass
class Measured:
    """One server: instructions per request over the repetitions."""

    label: str
    per_request: list[float] = field(default_factory=list)
    raw_per_request: list[float] = field(default_factory=list)  # before the idle correction
    idle_per_second: float = 0.0
    last_dump: str = ""
    requests_in_last_dump: int = 0


class Callgrind:
    """A server under callgrind, and its counters."""

    def __init__(
        self,
        tree: Path,
        argv: list[str],
        out_dir: Path,
        tag: str,
        *,
        prefork: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.out = out_dir / f"{tag}.%p"
        self.log = out_dir / f"{tag}.log"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={self.out}",
            "--dump-instr=no",
            sys.executable,
            str(tree / argv[0]),
            *argv[1:],
            str(self.port),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        env["SPOTGRACE_DRAIN_DELAY"] = "0"  # a quick stop (no lame duck: no client is left)
        env.update(extra_env or {})
        self.log_file = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.dumps = 0
        self._wait_listening(600.0)
        self.pid = self._worker(600.0) if prefork else self.proc.pid

    def _worker(self, limit: float) -> int:
        """The pid of the child the server forked (gunicorn's worker): a fork runs the same
        executable (valgrind's tool) as its parent; a child that exec'd (spotgrace's
        sentinel) does not, and is not followed. It must stay so for 2 s: a child caught
        between its fork and its exec looks like a worker for a moment."""
        deadline = time.monotonic() + limit
        pid = self.proc.pid
        exe = os.readlink(f"/proc/{pid}/exe")
        seen: dict[int, float] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log}")
            now = time.monotonic()
            for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
                try:
                    same = os.readlink(f"/proc/{child}/exe") == exe
                except OSError:
                    same = False
                if not same:
                    seen.pop(child, None)
                elif now - seen.setdefault(child, now) >= 2.0:
                    return child
            time.sleep(0.2)
        raise RuntimeError(f"no worker within {limit:g} s; see {self.log}")

    def _wait_listening(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not listen within {limit:g} s; see {self.log}")

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def zero(self) -> None:
        self._control("-z")

    def dump(self) -> tuple[int, str]:
        """Dump the counters (which zeroes them); returns (instructions, dump file)."""
        self._control("-d")
        self.dumps += 1
        path = str(self.out).replace("%p", str(self.pid)) + f".{self.dumps}"
        deadline = time.monotonic() + 60
        while True:
            try:
                text = Path(path).read_text()
            except FileNotFoundError:
                text = ""
            match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            if match:
                return int(match.group(1)), path
            if time.monotonic() > deadline:
                raise RuntimeError(f"no dump in {path}")
            time.sleep(0.2)

    def worker_total(self, limit: float = 600.0) -> tuple[int, str]:
        """The worker's counters from fork to exit (it exits by itself): (instructions, file)."""
        path = str(self.out).replace("%p", str(self.pid))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            text = Path(path).read_text() if Path(path).exists() else ""
            match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            if match:
                return int(match.group(1)), path
            time.sleep(0.5)
        raise RuntimeError(f"the worker wrote no counters in {path}; see {self.log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.pid != self.proc.pid:  # a worker left behind by a killed master
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.log_file.close()


def measure_prefork(
    label: str, tree: Path, argv: list[str], out_dir: Path, tag: str, args: argparse.Namespace
) -> Measured:
    """A pre-fork server (see ``PREFORK``): a worker that exits after W + N, one after W + 2N."""
    group = tag.rsplit("-", 1)[0]
    result = Measured(label)
    n = args.requests
    for rep in range(args.reps):
        totals = []
        for window in (n, 2 * n):
            requests = args.warmup + window
            env = {"BENCH_MAX_REQUESTS": str(requests)}
            server = Callgrind(
                tree, argv, out_dir, f"{tag}-r{rep}-{window}", prefork=True, extra_env=env
            )
            try:
                client = Client(server.port, 1, reconnect=group not in KEEPALIVE)
                client.run(requests)
                client.close()
                totals.append(server.worker_total())
            finally:
                server.stop()
        (one, _), (two, path) = totals
        raw = (two - one) / n
        result.raw_per_request.append(raw)
        result.per_request.append(raw)  # the worker's idle cost: select() with a 450 s timeout
        result.last_dump, result.requests_in_last_dump = path, args.warmup + 2 * n
        print(f"    {label}: {raw:,.0f} instructions/request", flush=True)
    return result


def measure(
    label: str, tree: Path, argv: list[str], out_dir: Path, tag: str, args: argparse.Namespace
) -> Measured:
    if tag.rsplit("-", 1)[0] in PREFORK:
        return measure_prefork(label, tree, argv, out_dir, tag, args)
    result = Measured(label)
    server = Callgrind(tree, argv, out_dir, tag)
    client = Client(server.port, args.connections)
    try:
        client.run(args.warmup)
        server.zero()
        time.sleep(args.idle)
        idle, _ = server.dump()
        result.idle_per_second = idle / args.idle
        n = args.requests
        for _ in range(args.reps):
            server.zero()
            t0 = time.monotonic()
            client.run(n)
            one, _ = server.dump()
            t1 = time.monotonic()
            client.run(2 * n)
            two, path = server.dump()
            t2 = time.monotonic()
            served = len(client.socks) * -(-n // len(client.socks))
            raw = (two - one) / served
            ticks = result.idle_per_second * ((t2 - t1) - (t1 - t0)) / served
            result.raw_per_request.append(raw)
            result.per_request.append(raw - ticks)
            result.last_dump, result.requests_in_last_dump = path, 2 * served
            print(
                f"    {label}: {raw - ticks:,.0f} instructions/request "
                f"(uncorrected {raw:,.0f}; idle {result.idle_per_second:,.0f}/s)",
                flush=True,
            )
    finally:
        client.close()
        server.stop()
    return result


# ------------------------------------------------------------------ functions


def self_costs(path: str) -> dict[str, int]:
    """Self instructions per C function (``callgrind_annotate``), keyed by ``file:function``."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    costs: dict[str, int] = {}
    total = re.search(r"^([\d,]+)\s+\(100\.0+%\)\s+PROGRAM TOTALS", out, re.M)
    # Lines of callers' pseudo-functions (main, below main...) carry inclusive costs: skip
    # anything above 40% of the program (the interpreter loop itself is about 25%).
    limit = 0.4 * int(total.group(1).replace(",", "")) if total else float("inf")
    for line in out.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([ \d.]+%\)\s+)?(\S.*?)(?:\s+\[.*\])?$", line)
        if match and ":" in match.group(2):
            cost = int(match.group(1).replace(",", ""))
            if cost <= limit:
                costs[match.group(2)] = costs.get(match.group(2), 0) + cost
    return costs


def function_diff(plain: Measured, grace: Measured, k: int) -> list[tuple[str, float, float]]:
    """The ``k`` functions whose self cost per request grows most: (name, plain, spotgrace)."""
    p = self_costs(plain.last_dump)
    g = self_costs(grace.last_dump)
    rows = [
        (
            name,
            p.get(name, 0) / plain.requests_in_last_dump,
            g.get(name, 0) / grace.requests_in_last_dump,
        )
        for name in set(p) | set(g)
    ]
    rows.sort(key=lambda r: r[2] - r[1], reverse=True)
    return rows[:k]


# ------------------------------------------------------------------ report


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| spotgrace | vs | instructions/request (range) | plain | ratio (plain/spotgrace) "
        "| extra/request |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['plain']} | {r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f})"
            f" | {r['plain_median']:,.0f} | {r['ratio']:.1%} | {r['median'] - r['plain_median']:+,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (callgrind) not found: apt-get install valgrind")
    tree = Path(args.tree).resolve()
    out_dir = RESULTS / "callgrind"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    functions: dict[str, Any] = {}
    for name in args.groups:
        print(f"{name}:", flush=True)
        measured = [
            measure(label, tree, argv, out_dir, f"{name}-{i}", args)
            for i, (label, argv) in enumerate(GROUPS[name])
        ]
        plain = measured[0]
        for grace in measured[1:]:
            med, pmed = statistics.median(grace.per_request), statistics.median(plain.per_request)
            rows.append(
                {
                    "group": name,
                    "label": grace.label,
                    "plain": plain.label,
                    "median": med,
                    "min": min(grace.per_request),
                    "max": max(grace.per_request),
                    "plain_median": pmed,
                    "plain_min": min(plain.per_request),
                    "plain_max": max(plain.per_request),
                    "ratio": pmed / med,
                    "per_request": grace.per_request,
                    "plain_per_request": plain.per_request,
                    "raw_per_request": grace.raw_per_request,
                    "plain_raw_per_request": plain.raw_per_request,
                    "idle_per_second": grace.idle_per_second,
                    "plain_idle_per_second": plain.idle_per_second,
                }
            )
            if args.functions:
                diff = function_diff(plain, grace, args.functions)
                functions[grace.label] = diff
                print(f"  where {grace.label} spends more than {plain.label} (self, per request):")
                for fn, p, g in diff:
                    print(f"    {g - p:+9,.0f}  ({p:,.0f} -> {g:,.0f})  {fn}")
    return {"rows": rows, "functions": functions, "conditions": conditions(args)}


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    dists = ("aiohttp", "uvicorn", "starlette", "h11", "httptools", "uvloop")
    for dist in (*dists, "waitress", "werkzeug", "flask", "gunicorn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    return {
        "python": sys.version.split()[0],
        "valgrind": valgrind.strip(),
        "versions": versions,
        "requests": args.requests,
        "warmup": args.warmup,
        "connections": args.connections,
        "reps": args.reps,
        "tree": str(Path(args.tree).resolve()),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--requests", type=int, default=2000, help="N: windows of N and 2N")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of the idle window")
    parser.add_argument("--functions", type=int, default=0, help="list the top K C functions")
    parser.add_argument("--tree", default=str(ROOT), help="the source tree to run servers from")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", default=str(RESULTS), help="where to write (two runs at once)")
    args, _unknown = parser.parse_known_args()  # run_all.py passes its extras to every script
    RESULTS = Path(args.results).resolve()
    if args.quick:
        args.requests, args.warmup, args.reps = 300, 100, 1
    results = main(args)
    table = render(results["rows"])
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instructions.md").write_text(table)
    (RESULTS / "instructions.json").write_text(json.dumps(results, indent=1))
    print(f"written: {RESULTS / 'instructions.md'}, {RESULTS / 'instructions.json'}")
