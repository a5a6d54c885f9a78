"""Torture the shutdown of ``spotgrace.asgi.serve()`` for connection resets.

    python bench/drop_torture.py --rounds 150                 # the fastapi example, quiet
    python bench/drop_torture.py --rounds 150 --hogs 2        # with 2 CPU hogs (a busy CI box)
    python bench/drop_torture.py --tree /path/to/other/tree   # the same against another checkout
    python bench/drop_torture.py --churn 4                    # plus 4 clients reconnecting non-stop

Each round starts the example (``examples/fastapi_app.py`` of ``--tree``) on
127.0.0.1, runs the same client pattern as
``tests/test_examples_http.py::test_fastapi_example_drops_nothing...`` (20
keep-alive connections, ``GET /work?ms=N`` with N in 50..300, SIGTERM 1 s in,
each worker reconnects after ``Connection: close`` and stops when refused) and
classifies every request: ok / 503 / refused (at connect) / reset
(``ConnectionResetError``) / other failure. The client is instrumented: each
failure is recorded with its connection's history (new connection or reused
keep-alive one, when the connect started and ended, when the request was
written) relative to the SIGTERM and to the server's listener close, which the
server reports on its stdout (``close_listeners`` wrapped, monotonic clock,
which is the same in both processes on Linux).

``--churn N`` adds N clients that open a fresh connection for every request
(``Connection: close``), back to back, until refused: many more handshakes
around the moment intake closes, so a race there shows in tens of rounds
rather than thousands. Their counts are reported apart (``churn``).

Every round is bounded (the server is killed after ``--exit-timeout``, the load
after ``sigterm_after + exit_timeout + 5`` s). Writes
``bench/results/drop_torture-<label>.json``. ``--hogs N`` starts N busy-loop
processes for the whole run and kills them (by PID) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import runpy
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, start_server  # noqa: E402
from bench.loadclient import IncompleteResponse, read_response, request_bytes  # noqa: E402

MARK = "DROP_TORTURE "


# ------------------------------------------------------------------ server side


def serve_instrumented(example: str) -> None:
    """Run ``example`` as ``__main__`` with ``close_listeners`` timed (printed on stdout)."""
    sys.path.insert(0, str(Path(example).resolve().parent.parent))  # its tree's spotgrace
    import spotgrace.asgi as asgi

    original = asgi.close_listeners

    async def timed(*args: Any, **kwargs: Any) -> None:
        sys.stdout.write(f"{MARK}listen_start {time.monotonic():.6f}\n")
        sys.stdout.flush()
        try:
            await original(*args, **kwargs)
        finally:
            sys.stdout.write(f"{MARK}listen_closed {time.monotonic():.6f}\n")
            sys.stdout.flush()

    asgi.close_listeners = timed  # type: ignore[assignment]
    sys.stdout.write(f"{MARK}tree {Path(asgi.__file__).parent.parent}\n")
    runpy.run_path(example, run_name="__main__")


# ------------------------------------------------------------------ client side


@dataclass
class Failure:
    """One request that did not end in a complete response."""

    kind: str  # "reset" or "other"
    error: str
    reused: bool  # the connection had served a request before this one
    index: int  # requests sent on this connection before this one
    connect_start: float
    connected: float
    written: float
    failed: float
    local_port: int


@dataclass
class Counts:
    ok: int = 0
    rejected: int = 0
    refused: int = 0
    reset: int = 0
    other: int = 0
    new_conn_requests: int = 0  # requests that were the first on their connection
    failures: list[Failure] = field(default_factory=list)


async def _worker(
    counts: Counts, port: int, stop: asyncio.Event, rng: random.Random, sleep_ms: tuple[int, int]
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    index = connect_start = connected = 0.0
    local_port = 0
    try:
        while not stop.is_set():
            if writer is None:
                connect_start = time.monotonic()
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    counts.refused += 1
                    return
                connected = time.monotonic()
                local_port = writer.get_extra_info("sockname")[1]
                index = 0
            assert reader is not None
            if index == 0:
                counts.new_conn_requests += 1
            writer.write(request_bytes(f"/work?ms={rng.randint(*sleep_ms)}"))
            written = time.monotonic()
            try:
                response = await read_response(reader)
            except (IncompleteResponse, OSError) as exc:
                text = repr(exc)
                kind = "reset" if "ConnectionResetError" in text else "other"
                setattr(counts, kind, getattr(counts, kind) + 1)
                counts.failures.append(
                    Failure(
                        kind,
                        text,
                        index > 0,
                        int(index),
                        connect_start,
                        connected,
                        written,
                        time.monotonic(),
                        local_port,
                    )
                )
                writer.close()
                writer = None
                continue
            index += 1
            if response.status == 200:
                counts.ok += 1
            elif response.status == 503:
                counts.rejected += 1
            else:
                counts.other += 1
            if response.close:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _churner(counts: Counts, port: int, stop: asyncio.Event) -> None:
    """A fresh connection per request (``Connection: close``), back to back, until refused."""
    while not stop.is_set():
        connect_start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts.refused += 1
            return
        connected = time.monotonic()
        local_port = writer.get_extra_info("sockname")[1]
        counts.new_conn_requests += 1
        try:
            writer.write(request_bytes("/work?ms=0", close=True))
            written = time.monotonic()
            response = await read_response(reader)
        except (IncompleteResponse, OSError) as exc:
            text = repr(exc)
            kind = "reset" if "ConnectionResetError" in text else "other"
            setattr(counts, kind, getattr(counts, kind) + 1)
            counts.failures.append(
                Failure(
                    kind,
                    text,
                    False,
                    0,
                    connect_start,
                    connected,
                    written,
                    time.monotonic(),
                    local_port,
                )
            )
            continue
        finally:
            writer.close()
        if response.status == 200:
            counts.ok += 1
        elif response.status == 503:
            counts.rejected += 1
        else:
            counts.other += 1


def _relative(counts: Counts, sigterm: float) -> list[dict[str, Any]]:
    out = []
    for f in counts.failures:
        d = asdict(f)
        for key in ("connect_start", "connected", "written", "failed"):
            d[key] = round(d[key] - sigterm, 6)  # seconds after the SIGTERM
        out.append(d)
    return out


async def one_round(
    tree: Path, seed: int, *, sigterm_after: float, exit_timeout: float, churn: int
) -> dict[str, Any]:
    port = free_port()
    example = tree / "examples" / "fastapi_app.py"
    env = {"HOST": "127.0.0.1", "PORT": str(port), "PYTHONPATH": str(tree)}
    server = await start_server([__file__, "--serve", str(example)], port, env=env)
    counts, stop = Counts(), asyncio.Event()
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(_worker(counts, port, stop, random.Random(rng.random()), (50, 300)))
        for _ in range(20)
    ]
    churn_counts = Counts()
    tasks += [asyncio.create_task(_churner(churn_counts, port, stop)) for _ in range(churn)]
    await asyncio.sleep(sigterm_after)
    sigterm = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = await server.wait(exit_timeout)
    stop.set()
    _done, pending = await asyncio.wait(tasks, timeout=5)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    counts.other += len(pending)
    marks: dict[str, float] = {}
    served_from = ""
    for line in (await server.output()).splitlines():
        if line.startswith(MARK):
            name, value = line[len(MARK) :].split(" ", 1)
            if name == "tree":
                served_from = value
            else:
                marks[name] = float(value) - sigterm
    return {
        "seed": seed,
        "served_from": served_from,
        "exit_code": code,
        "exit_after_sigterm": round(server.exited_at - sigterm, 4),
        "marks": {k: round(v, 6) for k, v in marks.items()},
        "ok": counts.ok,
        "503": counts.rejected,
        "refused": counts.refused,
        "reset": counts.reset,
        "other": counts.other,
        "new_conn_requests": counts.new_conn_requests,
        "failures": _relative(counts, sigterm),
        "churn": {
            "ok": churn_counts.ok,
            "503": churn_counts.rejected,
            "refused": churn_counts.refused,
            "reset": churn_counts.reset,
            "other": churn_counts.other,
            "connections": churn_counts.new_conn_requests,
            "failures": _relative(churn_counts, sigterm),
        },
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    started = time.monotonic()
    for seed in range(args.rounds):
        if time.monotonic() - started > args.max_minutes * 60:
            print(f"time limit ({args.max_minutes} min) reached after {seed} rounds", flush=True)
            break
        r = await one_round(
            args.tree,
            seed,
            sigterm_after=args.sigterm_after,
            exit_timeout=args.exit_timeout,
            churn=args.churn,
        )
        rounds.append(r)
        flag = " <-- " + "; ".join(
            f"{f['kind']} {'reused' if f['reused'] else 'new'} conn, connect "
            f"{f['connect_start'] * 1000:+.1f}..{f['connected'] * 1000:+.1f} ms, "
            f"written {f['written'] * 1000:+.1f} ms, failed {f['failed'] * 1000:+.1f} ms"
            for f in r["failures"] + r["churn"]["failures"]
        )
        c = r["churn"]
        print(
            f"round {seed + 1:3}: ok={r['ok']} 503={r['503']} refused={r['refused']} "
            f"reset={r['reset']} other={r['other']} exit={r['exit_code']} "
            f"in {r['exit_after_sigterm']:.2f}s marks={r['marks']}"
            + (
                f" churn: conns={c['connections']} ok={c['ok']} 503={c['503']} "
                f"reset={c['reset']} other={c['other']}"
                if args.churn
                else ""
            )
            + (flag if r["failures"] or c["failures"] else ""),
            flush=True,
        )
    keys = ("ok", "503", "refused", "reset", "other", "new_conn_requests")
    totals = {k: sum(r[k] for r in rounds) for k in keys}
    churn_keys = ("ok", "503", "refused", "reset", "other", "connections")
    churn_totals = {k: sum(r["churn"][k] for r in rounds) for k in churn_keys}
    summary = {
        "tree": str(args.tree),
        "hogs": args.hogs,
        "rounds": len(rounds),
        "churn": args.churn,
        "rounds_with_reset_or_other": sum(1 for r in rounds if r["reset"] or r["other"]),
        "rounds_with_churn_reset_or_other": sum(
            1 for r in rounds if r["churn"]["reset"] or r["churn"]["other"]
        ),
        "nonzero_exits": sum(1 for r in rounds if r["exit_code"] != 0),
        "totals": totals,
        "churn_totals": churn_totals,
        "round_data": rounds,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "round_data"}), flush=True)
    return summary


def _hogs(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_instrumented(sys.argv[2])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--hogs", type=int, default=0, help="busy-loop processes during the run")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code is served")
    parser.add_argument("--sigterm-after", type=float, default=1.0)
    parser.add_argument("--exit-timeout", type=float, default=20.0)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop starting rounds")
    parser.add_argument(
        "--churn", type=int, default=0, help="extra clients: one fresh connection per request"
    )
    parser.add_argument("--label", default="run")
    args = parser.parse_args()
    hogs = _hogs(args.hogs)
    try:
        results = asyncio.run(main(args))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"drop_torture-{args.label}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"written: {path}")
