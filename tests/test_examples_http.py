"""The HTTP examples, each started as a real server, loaded, SIGTERMed and checked.

Zero requests dropped, the hooks and the framework's own shutdown ran, exit 0.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.harness import Run, sigterm_under_load

from ._proc import parse_events

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _events(run: Run) -> list[dict[str, object]]:
    return parse_events(run.output.splitlines())


def _sigterm_example(name: str) -> Run:
    return asyncio.run(
        sigterm_under_load(
            [str(EXAMPLES / name)],
            env={"HOST": "127.0.0.1", "PORT": "{port}"},
            connections=20,
            sleep_ms=(50, 300),
            sigterm_after=1.0,
        )
    )


def _check_clean(run: Run) -> None:
    assert run.exit_code == 0, run.output
    assert run.load.dropped == 0, (run.load.as_dict(), run.load.errors, run.output)
    assert run.load.ok > 20, run.load.as_dict()  # the load really ran
    assert "hook: metrics flushed" in run.output.splitlines()
    finished = [e for e in _events(run) if e.get("event") == "shutdown.finished"]
    assert finished, run.output
    assert finished[0]["clean"] is True
    assert finished[0]["drained"] is True


def test_aiohttp_example_drops_nothing_runs_cleanup_and_exits_0() -> None:
    run = _sigterm_example("aiohttp_app.py")
    _check_clean(run)
    lines = run.output.splitlines()
    assert "aiohttp on_cleanup: resources closed" in lines
    # aiohttp's own cleanup is a spotgrace hook: it runs before the process ends, in the budget.
    hooks = [e["hook"] for e in _events(run) if e.get("event") == "hook.finished"]
    assert "aiohttp.cleanup" in hooks, run.output


def test_fastapi_example_drops_nothing_runs_lifespan_shutdown_and_exits_0() -> None:
    run = _sigterm_example("fastapi_app.py")
    _check_clean(run)
    lines = run.output.splitlines()
    assert "lifespan: started" in lines
    assert "lifespan: shutdown complete" in lines
    hooks = [e["hook"] for e in _events(run) if e.get("event") == "hook.finished"]
    assert "asgi.lifespan" in hooks, run.output
