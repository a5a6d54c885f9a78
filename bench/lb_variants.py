"""The servers compared behind the load balancer: plain and under spotgrace.

Each variant is a :class:`bench.lb_harness.Replica` factory taking the
spotgrace options (``drain_delay``, ``stop_timeout``); plain variants ignore them.
Every app answers ``GET /work?ms=N`` and a ``/readyz`` health check (the plain
ones: always 200, what a health endpoint without spotgrace does).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.lb_harness import Replica

__all__ = ["GRACE", "PLAIN", "VARIANTS", "replica"]

ROOT = Path(__file__).resolve().parent.parent
SERVERS = str(ROOT / "bench" / "servers.py")
EXAMPLES = str(ROOT / "examples")
DJANGO = str(ROOT / "examples" / "django_app")
CONF = "python:spotgrace.gunicorn"

_G = ["-m", "gunicorn", "-b", "127.0.0.1:{port}", "-w", "2"]


def _grace_env(drain_delay: float, stop_timeout: float) -> dict[str, str]:
    return {
        "SPOTGRACE_DRAIN_DELAY": str(drain_delay),
        "SPOTGRACE_STOP_TIMEOUT": str(stop_timeout),
    }


Factory = Callable[[float, float], Replica]

VARIANTS: dict[str, Factory] = {
    # single-process servers (bench/servers.py)
    "plain-uvicorn": lambda d, s: Replica([SERVERS, "plain-uvicorn", "{port}"], {}, s),
    "grace-asgi": lambda d, s: Replica(
        [SERVERS, "grace-asgi", "{port}"], _grace_env(d, s), s
    ),
    "plain-aiohttp": lambda d, s: Replica([SERVERS, "plain-aiohttp", "{port}"], {}, s),
    "grace-aiohttp": lambda d, s: Replica(
        [SERVERS, "grace-aiohttp", "{port}"], _grace_env(d, s), s
    ),
    # gunicorn sync + Flask
    "plain-gunicorn-sync-flask": lambda d, s: Replica(
        [*_G, "-k", "sync", "--chdir", EXAMPLES, "--graceful-timeout", str(int(s)),
         "bench.lb_wsgi_plain:flask_app"], {}, s,
    ),  # fmt: skip
    "grace-gunicorn-sync-flask": lambda d, s: Replica(
        [*_G, "-c", CONF, "-k", "sync", "--chdir", EXAMPLES, "flask_app:app"],
        _grace_env(d, s), s,
    ),  # fmt: skip
    # gunicorn gthread + Django
    "plain-gunicorn-gthread-django": lambda d, s: Replica(
        [*_G, "-k", "gthread", "--threads", "4", "--chdir", DJANGO,
         "--graceful-timeout", str(int(s)), "bench.lb_wsgi_plain:django_app"], {}, s,
    ),  # fmt: skip
    "grace-gunicorn-gthread-django": lambda d, s: Replica(
        [*_G, "-c", CONF, "-k", "gthread", "--threads", "4", "--chdir", DJANGO,
         "wsgi:application"], _grace_env(d, s), s,
    ),  # fmt: skip
    # gunicorn + uvicorn workers + FastAPI
    "plain-gunicorn-uvicorn-fastapi": lambda d, s: Replica(
        [*_G, "-k", "uvicorn.workers.UvicornWorker", "--graceful-timeout", str(int(s)),
         "bench.lb_asgi_apps:plain"], {}, s,
    ),  # fmt: skip
    "grace-gunicorn-uvicorn-fastapi": lambda d, s: Replica(
        [*_G, "-c", CONF, "-k", "spotgrace.gunicorn.workers.UvicornWorker",
         "bench.lb_asgi_apps:graced"], _grace_env(d, s), s,
    ),  # fmt: skip
}

#: spotgrace variant -> its plain counterpart
PLAIN = {
    "grace-asgi": "plain-uvicorn",
    "grace-aiohttp": "plain-aiohttp",
    "grace-gunicorn-sync-flask": "plain-gunicorn-sync-flask",
    "grace-gunicorn-gthread-django": "plain-gunicorn-gthread-django",
    "grace-gunicorn-uvicorn-fastapi": "plain-gunicorn-uvicorn-fastapi",
}
GRACE = tuple(PLAIN)


def replica(name: str, *, drain_delay: float, stop_timeout: float) -> Replica:
    """The replica of variant ``name``; its command runs with this interpreter."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")
    rep = VARIANTS[name](drain_delay, stop_timeout)
    return Replica(list(rep.argv), {"PYTHONPATH": f"{ROOT}", **rep.env}, rep.stop_timeout)


