"""spotgrace's exceptions.

The tree::

    SpotgraceError                       root of every error spotgrace raises
    ├── ConfigError (ValueError)         a bad option or SPOTGRACE_* variable, at start
    ├── StateError (RuntimeError)        used in the wrong state: entered twice, not entered
    ├── SignalInstallError (RuntimeError) handlers asked for outside the main thread
    │                                    (MissingExtraError, an ImportError, is not one:
    │                                    an integration imported without its extra)
    └── CheckpointError                  a checkpoint cannot be read back (spotgrace.checkpoint)
        └── CheckpointPathError (ValueError) a checkpoint path that cannot be made safe

    ShutdownInterrupt (BaseException)    raised in the main thread by ``interrupt=True``
                                         to end a blocking body; the ``with`` block
                                         swallows it
"""

from __future__ import annotations

import importlib.util

__all__ = [
    "ConfigError",
    "MissingExtraError",
    "ShutdownInterrupt",
    "SignalInstallError",
    "SpotgraceError",
    "StateError",
]


class SpotgraceError(Exception):
    """The root of every error spotgrace raises."""


class ConfigError(SpotgraceError, ValueError):
    """An option or ``SPOTGRACE_*`` environment variable has a bad value."""


class StateError(SpotgraceError, RuntimeError):
    """An object was used in a state that does not allow it."""


class SignalInstallError(SpotgraceError, RuntimeError):
    """Signal handlers can only be installed from the main thread."""


class ShutdownInterrupt(BaseException):
    """Raised in the main thread to end a blocking body once intake stops.

    Only with ``graceful(interrupt=True)``. Like :class:`KeyboardInterrupt` it
    derives from :class:`BaseException` so that ``except Exception`` in the app
    does not swallow it; the ``with spotgrace.graceful()`` block does.
    """


class MissingExtraError(ImportError):
    """An integration's optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, missing: str | None) -> None:
        what = missing or extra
        super().__init__(
            f'{module} needs {what}, which is not installed: pip install "spotgrace[{extra}]"',
            name=missing,
        )


def require_extra(module: str, extra: str, *dependencies: str) -> None:
    """Raise :class:`MissingExtraError` for ``module`` unless every dependency is importable.

    Called first thing by an integration package whose modules import their
    framework at the top, so that a missing extra is one clear error at import.
    """
    for name in dependencies:
        if importlib.util.find_spec(name) is None:
            raise MissingExtraError(module, extra, name)
