"""Options: keywords beat SPOTGRACE_* variables beat defaults; bad values fail at start."""

from __future__ import annotations

import signal

import pytest

import spotgrace
from spotgrace._core._config import default_margin, resolve_options


def test_defaults() -> None:
    o = resolve_options(environ={})
    assert o.stop_timeout == 30
    assert o.margin == 3
    assert o.budget == 27
    assert o.drain_delay == 0
    assert o.exit_code == "auto"
    assert o.watchdog_exit_code == 124
    assert o.second_signal == "exit"
    assert o.interrupt is False
    assert o.signals == (signal.SIGTERM, signal.SIGINT)


@pytest.mark.parametrize(("stop", "margin"), [(3, 0.5), (30, 3), (120, 5), (1, 0.5), (50, 5)])
def test_default_margin(stop: float, margin: float) -> None:
    assert default_margin(stop) == pytest.approx(margin)


def test_environment_is_used_when_no_keyword() -> None:
    env = {
        "SPOTGRACE_STOP_TIMEOUT": "120",
        "SPOTGRACE_MARGIN": "4",
        "SPOTGRACE_DRAIN_DELAY": "10",
        "SPOTGRACE_DRAIN_TIMEOUT": "60",
        "SPOTGRACE_HOOK_TIMEOUT": "5",
        "SPOTGRACE_EXIT_CODE": "signal",
        "SPOTGRACE_WATCHDOG_EXIT_CODE": "70",
        "SPOTGRACE_SECOND_SIGNAL": "ignore",
        "SPOTGRACE_INTERRUPT": "yes",
        "SPOTGRACE_SIGNALS": "TERM, SIGHUP",
    }
    o = resolve_options(environ=env)
    assert (o.stop_timeout, o.margin, o.drain_delay) == (120, 4, 10)
    assert (o.drain_timeout, o.hook_timeout) == (60, 5)
    assert o.exit_code == "signal"
    assert o.watchdog_exit_code == 70
    assert o.second_signal == "ignore"
    assert o.interrupt is True
    assert o.signals == (signal.SIGTERM, signal.SIGHUP)


def test_keyword_beats_environment() -> None:
    o = resolve_options(stop_timeout=10, environ={"SPOTGRACE_STOP_TIMEOUT": "120"})
    assert o.stop_timeout == 10
    assert o.margin == 1  # derived from the keyword's value


def test_graceful_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTGRACE_STOP_TIMEOUT", "60")
    with spotgrace.graceful(signals=(), exit_code="return") as grace:
        assert grace.options.stop_timeout == 60
        assert grace.remaining() == pytest.approx(55)


def test_empty_signals_variable_means_none() -> None:
    assert resolve_options(environ={"SPOTGRACE_SIGNALS": ""}).signals == ()
    assert resolve_options(environ={"SPOTGRACE_SIGNALS": "none"}).signals == ()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STOP_TIMEOUT", "abc", "must be a number of seconds"),
        ("STOP_TIMEOUT", "-5", "must be more than 0"),
        ("STOP_TIMEOUT", "0", "must be more than 0"),
        ("STOP_TIMEOUT", "nan", "finite"),
        ("STOP_TIMEOUT", "inf", "finite"),
        ("STOP_TIMEOUT", "100000", "at most 3600"),
        ("MARGIN", "-1", "0 or more"),
        ("DRAIN_DELAY", "x", "must be a number of seconds"),
        ("HOOK_TIMEOUT", "0", "more than 0"),
        ("EXIT_CODE", "256", "exit code 0-255"),
        ("EXIT_CODE", "kill", "exit code 0-255"),
        ("WATCHDOG_EXIT_CODE", "signal", "exit code 0-255"),
        ("SECOND_SIGNAL", "panic", "one of exit, ignore"),
        ("INTERRUPT", "maybe", "true or false"),
        ("SENTINEL", "flase", "true or false"),
        ("SIGNALS", "SIGBOGUS", "is not a signal"),
        ("SIGNALS", "SIGKILL", "cannot be handled"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(spotgrace.ConfigError, match=message) as info:
        resolve_options(environ={f"SPOTGRACE_{name}": value})
    assert f"SPOTGRACE_{name}" in str(info.value)
    assert name.lower() in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stop_timeout": -1}, "stop_timeout"),
        ({"stop_timeout": float("nan")}, "finite"),
        ({"stop_timeout": True}, "number of seconds"),
        ({"drain_delay": "soon"}, "drain_delay"),
        ({"exit_code": -1}, "exit code"),
        ({"signals": 15}, "list of signal names"),
    ],
)
def test_bad_keywords_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(spotgrace.ConfigError, match=message):
        spotgrace.graceful(**kwargs)  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="stop_timeout"):
        spotgrace.graceful(stop_timeout=-1)


def test_drain_delay_that_eats_the_budget_is_refused() -> None:
    with pytest.raises(spotgrace.ConfigError, match=r"drain_delay .* must be less than"):
        spotgrace.graceful(stop_timeout=10, drain_delay=9)


def test_margin_not_below_stop_timeout_is_refused() -> None:
    with pytest.raises(spotgrace.ConfigError, match=r"margin .* less than stop_timeout"):
        spotgrace.graceful(stop_timeout=5, margin=5)


def test_watchdog_exit_code_zero_is_refused() -> None:
    with pytest.raises(spotgrace.ConfigError, match="must not be 0"):
        spotgrace.graceful(watchdog_exit_code=0)


def test_exit_code_return_is_accepted() -> None:
    assert resolve_options(exit_code="return", environ={}).exit_code == "return"
    assert resolve_options(environ={"SPOTGRACE_EXIT_CODE": "Return"}).exit_code == "return"


def test_interrupt_without_any_signal_is_refused() -> None:
    with pytest.raises(spotgrace.ConfigError, match=r"interrupt .* signals"):
        spotgrace.graceful(interrupt=True, signals=())
