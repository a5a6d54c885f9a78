"""Shared fixtures: every test leaves signal handlers, env and the default hooks as it found them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from spotgrace._core._hooks import default_registry

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    env = dict(os.environ)
    hooks = default_registry.hooks()
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    os.environ.clear()
    os.environ.update(env)
    default_registry.clear()
    for hook in hooks:
        default_registry.register(hook.fn, order=hook.order, timeout=hook.timeout, name=hook.name)


@pytest.fixture(autouse=True)
def _no_spotgrace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from no SPOTGRACE_* variables, whatever the caller's shell has."""
    for name in list(os.environ):
        if name.startswith("SPOTGRACE_"):
            monkeypatch.delenv(name)
