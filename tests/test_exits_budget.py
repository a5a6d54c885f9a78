"""One budget: the keyword and SPOTGRACE_STOP_TIMEOUT, the smaller wins; `spotgrace run`'s child ends first."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest
import structlog.testing

import spotgrace
from spotgrace._core import _config, _envcheck
from spotgrace._core._config import resolve_options
from tests._proc import kill_quietly, start


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    _envcheck._warned.clear()
    yield
    _envcheck._warned.clear()


def _warnings(logs: list[dict[str, object]], event: str) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == event]


@pytest.mark.parametrize(("keyword", "env", "used"), [(120, "6", 6), (6, "120", 6)])
def test_keyword_and_variable_the_smaller_wins_with_a_warning_naming_both(
    keyword: float, env: str, used: float
) -> None:
    with structlog.testing.capture_logs() as logs:
        options = resolve_options(stop_timeout=keyword, environ={"SPOTGRACE_STOP_TIMEOUT": env})
    assert options.stop_timeout == used
    (warning,) = _warnings(logs, "config.stop_timeout_conflict")
    assert warning["log_level"] == "warning"
    assert "stop_timeout=" in str(warning["message"])
    assert f"SPOTGRACE_STOP_TIMEOUT={env}" in str(warning["message"])
    assert warning["using"] == used


def test_keyword_and_variable_that_agree_give_no_warning() -> None:
    with structlog.testing.capture_logs() as logs:
        resolve_options(stop_timeout=30, environ={"SPOTGRACE_STOP_TIMEOUT": "30"})
    assert not _warnings(logs, "config.stop_timeout_conflict")


def test_graceful_keyword_larger_than_the_platforms_budget_plans_for_the_platform(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTGRACE_STOP_TIMEOUT", "6")
    with spotgrace.graceful(stop_timeout=120, signals=(), exit_code="return") as grace:
        assert grace.options.stop_timeout == 6


def test_drain_delay_over_half_the_budget_is_warned_about() -> None:
    with structlog.testing.capture_logs() as logs:
        resolve_options(stop_timeout=30, drain_delay=20, environ={})
    (warning,) = _warnings(logs, "config.drain_delay_capped")
    assert warning["capped_to"] == 13.5
    assert "13.5 s" in str(warning["message"])


def test_unknown_spotgrace_variable_is_warned_about_with_a_suggestion() -> None:
    with structlog.testing.capture_logs() as logs:
        resolve_options(environ={"SPOTGRACE_STOPTIMEOUT": "6", "SPOTGRACE_WATCH": "off"})
    (warning,) = _warnings(logs, "config.unknown_variable")
    assert warning["variable"] == "SPOTGRACE_STOPTIMEOUT"
    assert warning["did_you_mean"] == "SPOTGRACE_STOP_TIMEOUT"
    assert "did you mean SPOTGRACE_STOP_TIMEOUT?" in str(warning["message"])


def test_cross_field_error_names_the_variable() -> None:
    with pytest.raises(spotgrace.ConfigError, match="from SPOTGRACE_MARGIN"):
        resolve_options(environ={"SPOTGRACE_MARGIN": "40"})


def test_child_budget_ends_before_the_supervisors_sigkill() -> None:
    env = _config.child_budget(30, 3)
    child = resolve_options(environ=env)
    assert child.stop_timeout == 27  # the supervisor's SIGKILL comes at 30 - 3
    assert child.budget < 27


@pytest.mark.slow
def test_spotgrace_run_gives_the_apps_watchdog_time_to_report_before_its_sigkill() -> None:
    # The app asks for stop_timeout=6 in code, with a hook that blocks its loop;
    # the supervisor SIGKILLs at 3 - 0.5 = 2.5 s. The app's own watchdog must
    # report (and exit 124) before that, rather than dying unreported (137).
    supervisor = [sys.executable, "-m", "spotgrace", "run", "--stop-timeout", "3", "--"]
    proc = start("exits_app.py", "watchdog", prefix=supervisor)
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        code = proc.finish(timeout=30)
    finally:
        kill_quietly(proc)
    assert code == 124, proc.output()
    exceeded = proc.event("shutdown.deadline_exceeded")
    assert exceeded["stuck_hooks"] == ["sync_block.<locals>.blocks_the_loop"]
    started = [e for e in proc.events() if e["event"] == "shutdown.started"]
    app = [e for e in started if "drain_delay" in e]  # the supervisor's has none
    assert app[0]["stop_timeout"] == 2.5, proc.output()  # not the 6 s asked for in code
