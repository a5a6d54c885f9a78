"""The intake-close handshake race, in isolation: ``close_listeners`` under connect churn.

    python bench/handshake_race.py --rounds 1000                  # this checkout
    python bench/handshake_race.py --tree /path/to/old/checkout   # another checkout's code
    python bench/handshake_race.py --hogs 2                       # with 2 CPU hogs

Each round: an asyncio echo server on 127.0.0.1; ``--clients`` threads connect
back to back (in one client process), each writing ``hi`` on its fresh
connection and reading the echo;
5..20 ms in, ``spotgrace._http._shared.close_listeners`` closes intake. Each
attempt ends as: ok (echo read), refused (connect refused), syn_dropped (the
connect timed out: the listener was dropping new SYNs, the client would be
refused after its SYN retry), reset (the connection was made, the request
written, and it was reset), other. A reset means the server's kernel had
answered the SYN before intake closed and the connection was lost at the close
(``bench/drop_torture.py`` runs the whole ``serve()``; this isolates the
listener close, where a round costs ~0.5 s instead of ~4 s).

Bounded: ``--rounds`` rounds, ``--max-minutes`` in all; socket timeouts 0.3 s
(connect) and 3 s (read). Writes ``bench/results/handshake_race-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)
        self.transport.close()


def _client(port: int, out: list[str]) -> None:
    while True:
        sock = socket.socket()
        try:
            sock.settimeout(0.3)
            try:
                sock.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                out.append("refused")
                return
            except TimeoutError:
                out.append("syn_dropped")
                return
            sock.settimeout(3)
            try:
                sock.sendall(b"hi")
                reply = sock.recv(100)
            except ConnectionResetError:
                out.append("reset")
                continue
            except OSError as exc:
                out.append(f"other:{exc!r}")
                continue
            out.append("ok" if reply == b"echo:hi" else f"other:{reply!r}")
        finally:
            sock.close()


def _clients(port: int, clients: int) -> dict[str, Any]:
    """In a client process: ``clients`` threads, each until refused; the outcomes counted."""
    out: list[str] = []
    threads = [threading.Thread(target=_client, args=(port, out)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    counts: dict[str, Any] = dict(collections.Counter(o.split(":", 1)[0] for o in out))
    if others := [o for o in out if o.startswith("other:")]:
        counts["others"] = others[:5]
    return counts


async def one_round(
    close_listeners: Any, rng: random.Random, clients: int, pool: ProcessPoolExecutor
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    # The clients run in another process, as real clients do (threads of this
    # one would wait for the GIL while close_listeners runs, never mid-handshake).
    load = loop.run_in_executor(pool, _clients, port, clients)
    await asyncio.sleep(rng.uniform(0.005, 0.02))
    await close_listeners([server], _Echo)
    counts = await load  # the loop keeps serving what it took meanwhile
    await server.wait_closed()
    return counts


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(args.tree))
    shared = importlib.import_module("spotgrace._http._shared")
    print(f"close_listeners from {shared.__file__}", flush=True)
    rng = random.Random(0)
    totals: collections.Counter[str] = collections.Counter()
    rounds_with_reset = 0
    other_errors: list[str] = []
    started = time.monotonic()
    done = 0
    pool = ProcessPoolExecutor(1)
    pool.submit(time.sleep, 0).result()  # started before the first round
    for n in range(args.rounds):
        if time.monotonic() - started > args.max_minutes * 60:
            print(f"time limit reached after {n} rounds", flush=True)
            break
        counts = await one_round(shared.close_listeners, rng, args.clients, pool)
        others = counts.pop("others", [])
        totals.update(counts)
        other_errors.extend(others)
        done += 1
        if counts.get("reset") or counts.get("other"):
            rounds_with_reset += 1
            print(f"round {n + 1}: {counts} {others}", flush=True)
        if (n + 1) % 100 == 0:
            print(f"{n + 1} rounds: {dict(totals)}", flush=True)
    pool.shutdown()
    summary = {
        "tree": str(args.tree),
        "served_from": shared.__file__,
        "hogs": args.hogs,
        "clients": args.clients,
        "rounds": done,
        "rounds_with_reset_or_other": rounds_with_reset,
        "totals": dict(totals),
        "other_errors": other_errors[:50],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--hogs", type=int, default=0)
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--label", default="run")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        results = asyncio.run(main(args))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"handshake_race-{args.label}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"written: {path}")
