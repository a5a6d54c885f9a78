"""spotgrace for Celery workers (extra ``celery``): one call in the app module.

    app = Celery("proj", broker=...)
    spotgrace.celery.install(app)      # SPOTGRACE_STOP_TIMEOUT=120, say

On SIGTERM, SIGINT or an early-warning notice the worker stops consuming at
once, running tasks get the drain part of the budget, tasks that cannot finish
are requeued and stopped, ``@spotgrace.on_shutdown`` hooks run, and the worker
and its pool processes are gone before the deadline. Celery's own settings
are derived from the same budget (:func:`celery_settings`). Supports the
prefork and threads pools. ``python -m spotgrace.celery health`` is a health
check for a worker without an HTTP port. See ``docs/celery.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from celery import Celery

import spotgrace
from spotgrace._core._config import resolve_options
from spotgrace._core._eventlog import emit

from . import _worker
from ._health import HealthResult, check_health, default_health_file
from ._settings import Budget, celery_settings

__all__ = [
    "Budget",
    "HealthResult",
    "Installed",
    "celery_settings",
    "check_health",
    "default_health_file",
    "install",
]


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did: the budget and the Celery settings it set."""

    budget: Budget
    settings: dict[str, Any]
    health_file: Path | None
    #: The values of yours it replaced (set before the call): name -> your value.
    overridden: dict[str, Any] = field(default_factory=dict)


def _explicit(app: Celery, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings the user set before ``install()`` to another value than ``settings``.

    What was assigned (``app.conf.x = ...``, ``app.conf.update``) before the
    configuration was loaded sits in Celery's ``_preconf``; after, in the
    first map of ``app.conf``. Reading either does not load the configuration.
    """
    explicit: dict[str, Any] = dict(getattr(app, "_preconf", None) or {})
    if getattr(app, "configured", False):
        maps = getattr(app.conf, "maps", None) or [{}]
        explicit.update({k: v for k, v in maps[0].items() if k in settings})
    return {k: explicit[k] for k in settings if k in explicit and explicit[k] != settings[k]}


def install(
    app: Celery,
    *,
    stop_timeout: float | None = None,
    margin: float | None = None,
    drain_timeout: float | None = None,
    hook_timeout: float | None = None,
    exit_code: int | None = None,
    second_signal: Literal["exit", "ignore"] | None = None,
    watch: str | list[object] | tuple[object, ...] | None = None,
    watch_interval: float | None = None,
    health_file: str | os.PathLike[str] | Literal[False] | None = None,
    health_interval: float = 5.0,
    configure: bool = True,
) -> Installed:
    """Give ``app``'s workers spotgrace's shutdown sequence; call it in the app module.

    Options left as ``None`` come from ``SPOTGRACE_*`` variables, as for
    :func:`spotgrace.graceful`; bad values raise :class:`spotgrace.ConfigError`
    here. ``drain_timeout`` is how long running tasks may go on after the
    notice (default 80% of ``stop_timeout - margin``). ``health_file``: where
    the heartbeat goes (default ``$SPOTGRACE_CELERY_HEALTH_FILE``, else
    ``/tmp/spotgrace-celery-health.json``; ``False``: none). With
    ``configure=False`` Celery's settings are left alone (the returned
    ``settings`` are what would have been set). A value of yours set before
    the call is replaced and logged (``celery.setting_overridden``,
    ``Installed.overridden``); one set after the call wins, and the worker logs
    it at start (``celery.setting_changed``).
    """
    if not isinstance(app, Celery):
        raise TypeError(f"install() needs a celery.Celery app, got {app!r}")
    if isinstance(exit_code, bool) or (exit_code is not None and not isinstance(exit_code, int)):
        raise TypeError(f"exit_code must be an int 0-255 or None, got {exit_code!r}")
    if isinstance(health_interval, bool) or not (
        isinstance(health_interval, int | float) and 0 < health_interval <= 3600
    ):
        raise ValueError(f"health_interval must be seconds in (0, 3600], got {health_interval!r}")
    opts = resolve_options(
        stop_timeout=stop_timeout,
        margin=margin,
        drain_timeout=drain_timeout,
        hook_timeout=hook_timeout,
        exit_code=exit_code,
        second_signal=second_signal,
        watch=watch,
        watch_interval=watch_interval,
    )
    if opts.exit_code in ("signal", "return"):
        raise spotgrace.ConfigError(
            f"exit_code (env SPOTGRACE_EXIT_CODE) must be a number or 'auto' for a Celery "
            f"worker, got {opts.exit_code!r}: Celery itself ends the worker process"
        )
    budget = Budget.from_options(
        stop_timeout=opts.stop_timeout, margin=opts.margin, drain_timeout=opts.drain_timeout
    )
    settings = celery_settings(budget)
    overridden: dict[str, Any] = {}
    if configure:
        overridden = _explicit(app, settings)
        app.conf.update(settings)
        for key, yours in overridden.items():
            emit(
                "warning",
                "celery.setting_overridden",
                setting=key,
                yours=yours,
                now=settings[key],
                hint="set it after install(), or install(configure=False), to keep yours",
            )
    path: Path | None
    if health_file is False:
        path = None
    elif health_file is None:
        path = default_health_file()
    else:
        path = Path(health_file)
    config = _worker.StepConfig(
        graceful_kwargs={
            "stop_timeout": opts.stop_timeout,
            "margin": opts.margin,
            "drain_delay": opts.drain_delay,
            "drain_timeout": opts.drain_timeout,
            "hook_timeout": opts.hook_timeout,
            "exit_code": opts.exit_code,
            "watchdog_exit_code": opts.watchdog_exit_code,
            "second_signal": opts.second_signal,
            "signals": opts.signals,
            "watch": opts.watch,
            "watch_interval": opts.watch_interval,
        },
        drain_timeout=opts.drain_timeout,
        health_file=path,
        health_interval=float(health_interval),
        settings=settings if configure else {},
    )
    step = type("SpotgraceStep", (_worker.SpotgraceStep,), {"config": config})
    app.steps["worker"].add(step)
    return Installed(budget=budget, settings=settings, health_file=path, overridden=overridden)
