"""spotgrace.gunicorn with real gunicorn processes: the sequence, the hooks, the exit code.

Real signals to a real gunicorn master on 127.0.0.1; Flask (examples/flask_app.py,
with examples/gunicorn.conf.py) and Django (examples/django_app/) from
``examples/``; direct clients (requests, httpx, aiohttp, hey) POSTing while
the master gets SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.harness import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PROGRAMS = ROOT / "tests" / "programs"


class Gunicorn:
    """A server subprocess (gunicorn, or any Python command line) and its output."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.popen = subprocess.Popen(
            [sys.executable, *argv],
            env=full,
            start_new_session=True,  # its own process group: a test may signal the group
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, limit: float = 30) -> None:
        import requests

        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not get ready:\n{self.output()}")

    def stop(self, limit: float) -> tuple[int, float]:
        t0 = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"not gone within {limit} s:\n{self.output()}") from None
        self._reader.join(5)
        return code, time.monotonic() - t0


@contextmanager
def gunicorn(args: list[str], env: dict[str, str]) -> Iterator[Gunicorn]:
    port = free_port()
    with server(["-m", "gunicorn", "-b", f"127.0.0.1:{port}", *args], env, port) as g:
        yield g


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int) -> Iterator[Gunicorn]:
    g = Gunicorn(argv, env, port)
    try:
        g.wait_ready()
        yield g
    finally:
        if g.popen.poll() is None:
            g.popen.kill()
            g.popen.wait()
        g._reader.join(5)
        if g.popen.stdout is not None:
            g.popen.stdout.close()


def _env(drain_delay: float, stop_timeout: float, **extra: str) -> dict[str, str]:
    return {
        "SPOTGRACE_DRAIN_DELAY": str(drain_delay),
        "SPOTGRACE_STOP_TIMEOUT": str(stop_timeout),
        **extra,
    }


@pytest.mark.timeout(60)
def test_flask_example_readiness_red_in_every_worker_then_hooks_and_exit_0() -> None:
    import requests

    conf = str(EXAMPLES / "gunicorn.conf.py")
    args = ["-c", conf, "-w", "3", "--chdir", str(EXAMPLES), "flask_app:app"]
    with gunicorn(args, _env(1.5, 10)) as g:
        base = f"http://127.0.0.1:{g.port}"
        t0 = time.monotonic()
        g.popen.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # Each request is a new connection, taken by any of the 3 workers: all are red.
        probes = [requests.get(f"{base}/readyz", timeout=5) for _ in range(12)]
        work = requests.get(f"{base}/work?ms=1", timeout=5)
        assert time.monotonic() - t0 < 1.5, "the lame duck ended before the checks ran"
        assert [p.status_code for p in probes] == [503] * 12
        assert work.status_code == 200
        assert work.headers["Connection"].lower() == "close"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        code = g.popen.wait(10)
        gone = time.monotonic() - t0
    out = g.output()
    assert code == 0, out
    assert 1.4 < gone < 10, out
    assert out.count(": pool closed") == 3, out  # the app's hook, once per worker
    assert out.count(": cleanup done") == 1, out  # the master's hook, once


@pytest.mark.timeout(60)
def test_django_example_gthread_drains_a_slow_request() -> None:
    import requests

    django_dir = EXAMPLES / "django_app"
    args = ["-c", "python:spotgrace.gunicorn", "-k", "gthread", "--threads", "4", "-w", "2"]
    args += ["--chdir", str(django_dir), "wsgi:application"]
    with gunicorn(args, _env(0.5, 10)) as g:
        base = f"http://127.0.0.1:{g.port}"
        result: dict[str, object] = {}

        def slow() -> None:
            r = requests.get(f"{base}/work?ms=2000", timeout=10)
            result["status"], result["body"] = r.status_code, r.content

        client = threading.Thread(target=slow)
        client.start()
        time.sleep(0.3)
        code, gone = g.stop(10)
        client.join(10)
    out = g.output()
    assert result == {"status": 200, "body": b"ok"}, out
    assert code == 0, out
    assert gone >= 1.5, out  # it waited for the request
    assert out.count(": connections closed") == 2, out


@pytest.mark.timeout(60)
def test_a_failing_worker_hook_makes_the_master_exit_1() -> None:
    args = [
        "-c",
        "python:spotgrace.gunicorn",
        "-w",
        "2",
        "--chdir",
        str(PROGRAMS),
        "wsgi_apps:slow",
    ]
    with gunicorn(args, _env(0, 10, FAILING_HOOK="1")) as g:
        code, gone = g.stop(10)
    out = g.output()
    assert code == 1, out
    assert "gunicorn.worker_failed" in out, out
    assert gone < 10, out


@pytest.mark.timeout(60)
def test_a_worker_killed_at_the_deadline_makes_the_master_exit_1_in_time() -> None:
    import requests

    args = [
        "-c",
        "python:spotgrace.gunicorn",
        "-w",
        "1",
        "--chdir",
        str(PROGRAMS),
        "wsgi_apps:slow",
    ]
    with gunicorn(args, _env(0, 5)) as g:
        hung = threading.Thread(
            target=lambda: _swallow(requests.get, f"http://127.0.0.1:{g.port}/sleep?s=30")
        )
        hung.start()
        time.sleep(0.3)
        code, gone = g.stop(10)
    out = g.output()
    assert code == 1, out
    assert gone < 5, out  # before the platform's stop timeout


def _swallow(fn: object, *args: object) -> None:
    with contextlib.suppress(Exception):  # the worker is killed under it: expected
        fn(*args, timeout=20)  # type: ignore[operator]


# ------------------------------------------------------------------ direct clients

SERVERS = str(ROOT / "bench" / "servers.py")
_GUNICORN = ["-m", "gunicorn", "-b", "127.0.0.1:{port}", "-c", "python:spotgrace.gunicorn"]
DIRECT = {
    "gunicorn-sync-flask": (
        [*_GUNICORN, "-w", "2", "-k", "sync", "--chdir", str(EXAMPLES), "flask_app:app"],
        "/echo",
    ),
    "gunicorn-gthread": (
        [*_GUNICORN, "-w", "2", "-k", "gthread", "--threads", "4", "--chdir", str(PROGRAMS),
         "wsgi_apps:slow"],
        "/post",
    ),
    "gunicorn-uvicorn-fastapi": (
        [*_GUNICORN, "-w", "2", "-k", "spotgrace.gunicorn.workers.UvicornWorker",
         "bench.lb_asgi_apps:graced"],
        "/echo",
    ),
    "asgi-serve": ([SERVERS, "grace-asgi", "{port}"], "/echo"),
    "aiohttp-run_app": ([SERVERS, "grace-aiohttp", "{port}"], "/echo"),
}  # fmt: skip


def _client_loops(base: str, path: str, stop: threading.Event, counts: dict[str, int]) -> list:
    import httpx
    import requests

    lock = threading.Lock()

    def bump(key: str) -> None:
        with lock:
            counts[key] = counts.get(key, 0) + 1

    def with_requests() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(base + path, data=b"payload", timeout=10)
                bump("ok" if r.content == b"payload" else f"status {r.status_code}")
            except requests.ConnectionError as exc:
                refused = "refused" in str(exc).lower()
                bump("refused" if refused else f"requests dropped: {exc}")
                time.sleep(0.01)

    def with_httpx() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(base + path, content=b"payload")
                    bump("ok" if r.content == b"payload" else f"status {r.status_code}")
                except httpx.ConnectError:
                    bump("refused")
                    time.sleep(0.01)
                except httpx.HTTPError as exc:
                    bump(f"httpx dropped: {exc!r}")

    def with_aiohttp() -> None:
        import aiohttp

        async def loop() -> None:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    try:
                        async with session.post(base + path, data=b"payload") as r:
                            body = await r.read()
                        bump("ok" if body == b"payload" else f"status {r.status}")
                    except aiohttp.ClientConnectorError:
                        bump("refused")
                        await asyncio.sleep(0.01)
                    except aiohttp.ClientError as exc:
                        bump(f"aiohttp dropped: {exc!r}")

        asyncio.run(loop())

    threads = [threading.Thread(target=f) for f in (with_requests, with_httpx, with_aiohttp)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(DIRECT))
def test_direct_clients_posting_during_sigterm_lose_nothing(name: str) -> None:
    argv, path = DIRECT[name]
    port = free_port()
    counts: dict[str, int] = {}
    stop = threading.Event()
    with server([a.format(port=port) for a in argv], _env(0.5, 10), port) as g:
        base = f"http://127.0.0.1:{g.port}"
        threads = _client_loops(base, path, stop, counts)
        hey = None
        if shutil.which("hey"):  # Go's HTTP client
            hey = subprocess.Popen(
                ["hey", "-z", "2s", "-c", "2", "-q", "50", "-m", "POST", "-d", "payload",
                 base + path],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        time.sleep(0.7)
        code, _ = g.stop(10)
        stop.set()
        for t in threads:
            t.join(15)
    hey_out = hey.communicate(timeout=20)[0] if hey is not None else None
    out = g.output()
    assert code == 0, out
    assert counts.get("ok", 0) > 20, counts
    # Answered (ok, or 503 + Retry-After on a connection accepted just before intake
    # closed) or refused at connect once the listener is gone; never dropped.
    dropped = {k: v for k, v in counts.items() if k not in ("ok", "refused", "status 503")}
    assert dropped == {}, counts
    if hey_out is not None:
        from bench.lb_harness import parse_hey

        _, non_2xx, errors = parse_hey(hey_out)
        hey_dropped = {k: v for k, v in errors.items() if "connection refused" not in k}
        assert set(non_2xx) <= {503}, hey_out
        assert hey_dropped == {}, hey_out
    elif os.environ.get("CI"):
        pytest.fail("hey is missing in CI")


@pytest.mark.timeout(30)
def test_a_bad_spotgrace_option_stops_gunicorn_at_start_with_its_name() -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "python:spotgrace.gunicorn", "-b",
         f"127.0.0.1:{port}", "--chdir", str(PROGRAMS), "wsgi_apps:slow"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SPOTGRACE_STOP_TIMEOUT": "soon"},
        capture_output=True, text=True, timeout=25, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "SPOTGRACE_STOP_TIMEOUT" in proc.stdout + proc.stderr


@pytest.mark.timeout(30)
def test_one_process_wsgiref_recipe_drains_a_request_and_runs_hooks() -> None:
    import requests

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "wsgiref_server.py"), str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SPOTGRACE_DRAIN_DELAY": "0.5"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "serving"
        result: dict[str, object] = {}

        def slow() -> None:
            r = requests.get(f"http://127.0.0.1:{port}/sleep?s=1.5", timeout=10)
            result["status"] = r.status_code

        client = threading.Thread(target=slow)
        client.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
        out, _ = proc.communicate(timeout=15)
        client.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert ready == 503, out
    assert result == {"status": 200}, out
    assert proc.returncode == 0, out
    assert "hook: ran" in out, out


@pytest.mark.timeout(40)
def test_an_early_warning_notice_in_the_master_runs_the_sequence_for_every_worker() -> None:
    import requests

    from spotgrace.testing import FakeEndpoints

    with FakeEndpoints() as fake:
        env = _env(1.0, 10, SPOTGRACE_WATCH="ecs", SPOTGRACE_WATCH_INTERVAL="0.2", **fake.env())
        args = ["-c", "python:spotgrace.gunicorn", "-w", "2", "--chdir", str(PROGRAMS)]
        with gunicorn([*args, "wsgi_apps:slow"], env) as g:
            base = f"http://127.0.0.1:{g.port}"
            t0 = time.monotonic()
            fake.interrupt()
            end = time.monotonic() + 5
            while requests.get(f"{base}/readyz", timeout=5).status_code != 503:
                assert time.monotonic() < end, g.output()
                time.sleep(0.05)
            probes = [requests.get(f"{base}/readyz", timeout=5).status_code for _ in range(6)]
            code = g.popen.wait(15)
            gone = time.monotonic() - t0
    out = g.output()
    assert probes == [503] * 6, out  # every worker red, not just one
    assert "source=watch" in out, out
    assert code == 0, out
    assert gone < 10, out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker", ["sync", "spotgrace.gunicorn.workers.UvicornWorker"])
def test_sigterm_to_the_whole_group_still_gets_the_lame_duck(worker: str) -> None:
    import requests

    app = "flask_app:app" if worker == "sync" else "bench.lb_asgi_apps:graced"
    args = ["-c", "python:spotgrace.gunicorn", "-w", "2", "-k", worker]
    with gunicorn([*args, "--chdir", str(EXAMPLES), app], _env(2.0, 10)) as g:
        base = f"http://127.0.0.1:{g.port}"
        t0 = time.monotonic()
        os.killpg(g.popen.pid, signal.SIGTERM)  # master and workers at once (a group kill)
        time.sleep(0.5)
        work = [requests.get(f"{base}/work?ms=1", timeout=5).status_code for _ in range(8)]
        ready = requests.get(f"{base}/readyz", timeout=5).status_code
        in_lame_duck = time.monotonic() - t0 < 2.0
        code = g.popen.wait(15)
    out = g.output()
    assert in_lame_duck, out
    assert work == [200] * 8, out  # the workers did not stop with the group's signal
    assert ready == 503, out
    assert code == 0, out
