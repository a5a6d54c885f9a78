"""The servers compared behind the load balancer: plain and under spotgrace.

Each variant is a :class:`bench.lb_harness.Replica` factory taking the
spotgrace options (``drain_delay``, ``stop_timeout``); plain variants ignore them.
Every app answers ``GET /work?ms=N`` and a ``/readyz`` health check (the plain
ones: always 200, what a health endpoint without spotgrace does).
"""

from __future__ import annotations

from pathlib import Path

from bench.lb_harness import Replica

__all__ = ["GRACE", "PLAIN", "VARIANTS", "replica"]

ROOT = Path(__file__).resolve().parent.parent
SERVERS = str(ROOT / "bench" / "servers.py")
EXAMPLES = str(ROOT / "examples")
DJANGO = str(ROOT / "examples" / "django_app")
CONF = "python:spotgrace.gunicorn"

_G = ["-m", "gunicorn", "-b", "127.0.0.1:{port}", "-w", "2"]


def _argv(name: str, stop_timeout: float) -> list[str]:
    plain_timeout = ["--graceful-timeout", str(int(stop_timeout))]
    table: dict[str, list[str]] = {
        # single-process servers (bench/servers.py)
        "plain-uvicorn": [SERVERS, "plain-uvicorn", "{port}"],
        "grace-asgi": [SERVERS, "grace-asgi", "{port}"],
        "plain-aiohttp": [SERVERS, "plain-aiohttp", "{port}"],
        "grace-aiohttp": [SERVERS, "grace-aiohttp", "{port}"],
        # gunicorn sync + Flask
        "plain-gunicorn-sync-flask": [
            *_G, "-k", "sync", "--chdir", EXAMPLES, *plain_timeout,
            "bench.lb_wsgi_plain:flask_app",
        ],
        "grace-gunicorn-sync-flask": [
            *_G, "-c", CONF, "-k", "sync", "--chdir", EXAMPLES, "flask_app:app",
        ],
        # gunicorn gthread + Django
        "plain-gunicorn-gthread-django": [
            *_G, "-k", "gthread", "--threads", "4", "--chdir", DJANGO, *plain_timeout,
            "bench.lb_wsgi_plain:django_app",
        ],
        "grace-gunicorn-gthread-django": [
            *_G, "-c", CONF, "-k", "gthread", "--threads", "4", "--chdir", DJANGO,
            "wsgi:application",
        ],
        # gunicorn + uvicorn workers + FastAPI
        "plain-gunicorn-uvicorn-fastapi": [
            *_G, "-k", "uvicorn.workers.UvicornWorker", *plain_timeout,
            "bench.lb_asgi_apps:plain",
        ],
        "grace-gunicorn-uvicorn-fastapi": [
            *_G, "-c", CONF, "-k", "spotgrace.gunicorn.workers.UvicornWorker",
            "bench.lb_asgi_apps:graced",
        ],
        # uvicorn --workers 2 + FastAPI, spotgrace in the lifespan (LifespanGrace)
        "plain-uvicorn-workers": [
            "-m", "uvicorn", "bench.lb_asgi_apps:plain", "--port", "{port}", "--workers", "2",
            "--no-access-log",
        ],
        "grace-uvicorn-workers-lifespan": [
            "-m", "uvicorn", "bench.lb_lifespan_app:app", "--port", "{port}", "--workers", "2",
            "--no-access-log",
        ],
    }  # fmt: skip
    return table[name]


#: spotgrace variant -> its plain counterpart
PLAIN = {
    "grace-asgi": "plain-uvicorn",
    "grace-aiohttp": "plain-aiohttp",
    "grace-gunicorn-sync-flask": "plain-gunicorn-sync-flask",
    "grace-gunicorn-gthread-django": "plain-gunicorn-gthread-django",
    "grace-gunicorn-uvicorn-fastapi": "plain-gunicorn-uvicorn-fastapi",
    "grace-uvicorn-workers-lifespan": "plain-uvicorn-workers",
}
GRACE = tuple(PLAIN)
VARIANTS = (*GRACE, *PLAIN.values())


def replica(name: str, *, drain_delay: float, stop_timeout: float) -> Replica:
    """The replica of variant ``name``; its command runs with this interpreter."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")
    env = {"PYTHONPATH": str(ROOT)}
    if name.startswith("grace-"):
        env |= {
            "SPOTGRACE_DRAIN_DELAY": str(drain_delay),
            "SPOTGRACE_STOP_TIMEOUT": str(stop_timeout),
        }
    return Replica(_argv(name, stop_timeout), env, stop_timeout)
