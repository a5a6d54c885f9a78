"""Where spotgrace's WSGI middleware spends its instructions, in process, under callgrind.

    python bench/wsgi_cost.py                  # every variant, N=3000, 2 repetitions
    python bench/wsgi_cost.py --tree /tmp/old  # the spotgrace of another source tree

One process (``python bench/wsgi_cost.py --serve``) runs under ``valgrind
--tool=callgrind`` (``PYTHONHASHSEED=0``) and, per variant, 200 calls to warm
up, then a window of ``N`` calls and one of ``2N``, each between
``callgrind_control -z`` and ``-d``, as ``bench/instructions.py`` does; the
difference of the two windows over ``N`` is the count per call. A call
of a ``wsgi-*`` variant is one request as a server makes it: ``app(environ,
start_response)``, iterate the body, ``close()`` it. The ``piece-*`` variants
are the parts of it, each less ``empty`` (the loop and one function call).
``bench/instructions.py --groups wsgi`` measures the same middleware behind a
real server; this splits its extra into parts.

Writes ``bench/results/wsgi_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

_BODY = b"hello"
_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")]

#: variant -> what it is (the table's second column)
VARIANTS = {
    "empty": "the loop: one call of a do-nothing function",
    "wsgi-app": "the bare app, called as a server calls it (call, iterate, close if any)",
    "wsgi-mw-const": "GraceMiddleware, a grace of constants whose inflight() is C (a lock)",
    "wsgi-mw-grace": "GraceMiddleware(grace=) with the Grace of spotgrace.graceful()",
    "wsgi-mw-worker": "GraceMiddleware() with a gunicorn worker's grace (shared state)",
    "piece-body": "the body wrapper (list, a C leave): make, iterate, close, free (vs piece-list)",
    "piece-list": "the list the bare app returns: iterate (the server's part, for piece-body)",
    "piece-grace-ready": "grace.ready (Grace: attrgetter in C)",
    "piece-grace-stopping": "grace.stopping (Grace: property -> Flag.is_set -> Event.is_set)",
    "piece-grace-scope": "grace.inflight() + __enter__ + __exit__ (Grace)",
    "piece-readiness": "_shared.readiness(grace).ready (the coordinator's attribute)",
    "piece-worker-current": "_prefork.current() (what GraceMiddleware._grace does for grace=None)",
    "piece-worker-ready": "WorkerGrace.ready (property -> SharedState.noticed -> mmap byte)",
    "piece-worker-stopping": "WorkerGrace.stopping (property -> SharedState.stopping)",
    "piece-worker-scope": "WorkerGrace.inflight() + __enter__ + __exit__ (lock, count)",
    "piece-grace-tracker": "the Grace's InflightTracker.enter(None) + exit(None), no scope",
}


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The bench's bare WSGI app (as ``bench/wsgi_servers.py``)."""
    start_response("200 OK", _HEADERS)
    return [_BODY]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


class ConstGrace:
    """Always ready, never stopping; ``inflight()`` is C and returns a C context manager."""

    ready = True
    stopping = False

    def __init__(self) -> None:
        self.inflight = itertools.repeat(threading.Lock()).__next__


def _served(app: Any, environ: dict[str, Any]) -> Callable[[], None]:
    def step() -> None:
        result = app(environ, _start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return step


def make_steps(stack: Any) -> dict[str, Callable[[], None]]:
    """Per variant, the function one call of it runs."""
    import spotgrace
    from spotgrace._http import _prefork
    from spotgrace._http._shared import readiness

    try:  # before the lean path (issue 13): _Body(body, scope)
        from spotgrace._http._wsgi import _Body  # type: ignore[attr-defined]

        def make_body(chunks: list[bytes], leave: Any) -> Any:
            return _Body(chunks, leave.__self__)

    except ImportError:  # after: the body calls leave() once
        from spotgrace._http._wsgi_body import wrap_body as make_body  # type: ignore[assignment]
    from spotgrace.wsgi import GraceMiddleware

    environ = {"PATH_INFO": "/hello", "REQUEST_METHOD": "GET", "SERVER_SOFTWARE": "bench"}
    grace = stack.enter_context(spotgrace.graceful(drain_delay=0, signals=[]))
    _prefork.install(_prefork.SharedState())
    worker = _prefork.current()
    assert worker is not None
    sink: list[object] = [None]

    def empty() -> None:
        pass

    released = memoryview(b"")  # a C __exit__ that may be called again and again
    released.release()

    def body() -> None:
        b = make_body([_BODY], released.__exit__)
        for _chunk in b:
            pass
        b.close()

    def lst() -> None:
        for _chunk in [_BODY]:
            pass

    def scope_of(g: Any) -> Callable[[], None]:
        def scope() -> None:
            s = g.inflight()
            s.__enter__()
            s.__exit__(None, None, None)

        return scope

    def tracked(tracker: Any) -> Callable[[], None]:
        def track() -> None:
            tracker.enter(None)
            tracker.exit(None)

        return track

    def read(obj: Any, name: str) -> Callable[[], None]:
        def get() -> None:
            sink[0] = getattr(obj, name)

        return get

    flags = readiness(grace)
    steps: dict[str, Callable[[], None]] = {
        "empty": empty,
        "wsgi-app": _served(bare_app, environ),
        "wsgi-mw-const": _served(GraceMiddleware(bare_app, grace=ConstGrace()), environ),
        "wsgi-mw-grace": _served(GraceMiddleware(bare_app, grace=grace), environ),
        "wsgi-mw-worker": _served(GraceMiddleware(bare_app), environ),
        "piece-body": body,
        "piece-list": lst,
        "piece-grace-ready": read(grace, "ready"),
        "piece-grace-stopping": read(grace, "stopping"),
        "piece-grace-scope": scope_of(grace),
        "piece-readiness": read(flags, "ready"),
        "piece-worker-current": _prefork.current,  # type: ignore[dict-item]
        "piece-worker-ready": read(worker, "ready"),
        "piece-worker-stopping": read(worker, "stopping"),
        "piece-worker-scope": scope_of(worker),
        "piece-grace-tracker": tracked(grace._c.tracker),
    }
    return steps


def serve() -> None:
    """Under callgrind: make every step, then run ``VARIANT COUNT`` lines read from stdin."""
    import contextlib

    with contextlib.ExitStack() as stack:
        steps = make_steps(stack)
        print("ready", flush=True)
        for line in sys.stdin:
            name, count = line.split()
            step = steps[name]
            for _ in range(int(count)):
                step()
            print("done", flush=True)


class Harness:
    """``--serve`` under callgrind, its counters zeroed and dumped by ``callgrind_control``."""

    def __init__(self, tree: Path, out_dir: Path) -> None:
        self.out = out_dir / "wsgi_cost.%p"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={self.out}",
            "--dump-instr=no",
        ]
        cmd += [sys.executable, str(Path(__file__).resolve()), "--serve"]
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.dumps = 0
        self._expect("ready")

    def _expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        while True:  # skip spotgrace's log lines
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the harness exited before {word!r}")
            if line.strip() == word:
                return

    def call(self, variant: str, count: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{variant} {count}\n")
        self.proc.stdin.flush()
        self._expect("done")

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.proc.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def window(self, variant: str, count: int) -> int:
        """Instructions of ``count`` calls (plus the same constant in every window)."""
        self._control("-z")
        self.call(variant, count)
        self._control("-d")
        self.dumps += 1
        path = Path(str(self.out).replace("%p", str(self.proc.pid)) + f".{self.dumps}")
        deadline = time.monotonic() + 60
        while True:
            text = path.read_text() if path.exists() else ""
            match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            if match:
                path.unlink()
                return int(match.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError(f"no dump in {path}")
            time.sleep(0.2)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(120)


def main(args: argparse.Namespace) -> dict[str, Any]:
    tree = Path(args.tree).resolve()
    n = args.requests
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.reps):
            harness = Harness(tree, Path(tmp))
            try:
                for variant in args.variants:
                    harness.call(variant, 200)  # warm up
                    one = harness.window(variant, n)
                    two = harness.window(variant, 2 * n)
                    rows.setdefault(variant, []).append((two - one) / n)
                    print(f"  {variant}: {rows[variant][-1]:,.0f}", flush=True)
            finally:
                harness.close()
    return {"rows": rows, "requests": n, "reps": args.reps, "tree": str(tree)}


def render(results: dict[str, Any]) -> str:
    rows = results["rows"]
    med = {k: statistics.median(v) for k, v in rows.items()}
    base = {"wsgi": med.get("wsgi-app", 0.0), "piece": med.get("empty", 0.0)}
    lines = [
        "| variant | what | instructions/call (range) | less the base |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, values in rows.items():
        kind = name.split("-", 1)[0]
        extra = (
            f"{med[name] - base[kind]:+,.0f}"
            if kind in base
            and name
            not in (
                "wsgi-app",
                "empty",
            )
            else ""
        )
        lines.append(
            f"| `{name}` | {VARIANTS[name]} | {med[name]:,.0f} "
            f"({min(values):,.0f}-{max(values):,.0f}) | {extra} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="(the process under callgrind)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--requests", type=int, default=3000, help="N: windows of N and 2N calls")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--tree", default=str(ROOT), help="the source tree to import from")
    args, _unknown = parser.parse_known_args()
    if args.serve:
        serve()
        sys.exit(0)
    results = main(args)
    table = render(results)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wsgi_cost.md").write_text(table)
    (RESULTS / "wsgi_cost.json").write_text(json.dumps(results, indent=1))
    print(f"written: {RESULTS / 'wsgi_cost.md'}, {RESULTS / 'wsgi_cost.json'}")
