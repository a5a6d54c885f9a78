"""spotgrace: graceful shutdown for containerised Python services.

``import spotgrace`` imports structlog and the standard library only; the
integrations (``spotgrace.aiohttp``, ``spotgrace.asgi``, ``spotgrace.watch``)
import their frameworks when they are imported themselves.
"""

from __future__ import annotations

import sys as _sys

if _sys.argv[1:2] == ["run"] and (
    _sys.argv[0] == "-m" or _sys.argv[0].rsplit("/", 1)[-1] == "spotgrace"
):  # `spotgrace run` (or `python -m spotgrace run`): as PID 1, a SIGTERM that arrives
    # while it is still importing would be dropped. Block what the supervisor waits
    # for before anything else; it takes them with sigtimedwait once it runs.
    import signal as _signal

    _signal.pthread_sigmask(
        _signal.SIG_BLOCK,
        {
            _signal.SIGTERM,
            _signal.SIGINT,
            _signal.SIGHUP,
            _signal.SIGQUIT,
            _signal.SIGUSR1,
            _signal.SIGUSR2,
            _signal.SIGWINCH,
            _signal.SIGCHLD,
        },
    )

from ._core._config import ExitCode as ExitCode
from ._core._config import Options as Options
from ._core._coordinator import Notice as Notice
from ._core._coordinator import State as State
from ._core._errors import ConfigError as ConfigError
from ._core._errors import ShutdownInterrupt as ShutdownInterrupt
from ._core._errors import SignalInstallError as SignalInstallError
from ._core._errors import SpotgraceError as SpotgraceError
from ._core._errors import StateError as StateError
from ._core._hooks import Hook as Hook
from ._core._hooks import HookRegistry as HookRegistry
from ._core._hooks import on_shutdown as on_shutdown
from ._core._inflight import InflightScope as InflightScope
from ._core._logging import configure_json_logging as configure_json_logging
from ._graceful._graceful import AsyncGrace as AsyncGrace
from ._graceful._graceful import Grace as Grace
from ._graceful._graceful import Graceful as Graceful
from ._graceful._graceful import graceful as graceful
from ._graceful._run import run as run
from ._graceful._verdict import EXIT_INCOMPLETE as EXIT_INCOMPLETE
from ._graceful._verdict import EXIT_UNCLEAN as EXIT_UNCLEAN

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - plain sorted(), as tests/test_public_api.py checks
    "AsyncGrace",
    "ConfigError",
    "EXIT_INCOMPLETE",
    "EXIT_UNCLEAN",
    "ExitCode",
    "Grace",
    "Graceful",
    "Hook",
    "HookRegistry",
    "InflightScope",
    "Notice",
    "Options",
    "ShutdownInterrupt",
    "SignalInstallError",
    "SpotgraceError",
    "State",
    "StateError",
    "__version__",
    "configure_json_logging",
    "graceful",
    "on_shutdown",
    "run",
]
