"""``spotgrace plan``: drain_delay and stop_timeout worked out from the balancer's settings."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from spotgrace._cli import main as cli_main
from spotgrace._cli._plan import Setup, make_plan


def plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = cli_main(["plan", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_ecs_defaults_fit_the_default_stop_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    code, plan = plan_json(capsys)
    assert code == 0
    assert plan["fits"] is True
    # ECS deregisters first: the lame duck covers propagation (5 s) plus one second.
    assert plan["drain_delay"] == 6.0
    assert plan["needed"] == 6 + 10 + 5 + 3


def test_health_check_only_with_alb_defaults_does_not_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, plan = plan_json(capsys, "--platform", "health-check")
    assert code == 1
    assert plan["fits"] is False
    assert plan["exposure"] == 60.0  # 30 s x 2
    assert plan["drain_delay"] == 61.0
    assert plan["stop_timeout_needed"] == 81.0  # 61 + 10 + 5 + a 5 s margin
    advice = " ".join(plan["advice"])  # type: ignore[arg-type]
    assert "at least 81 s" in advice
    assert "every 5 s" in advice


def test_the_suggested_stop_timeout_fits_when_fed_back() -> None:
    for platform in ("ecs", "kubernetes", "health-check"):
        for interval in (5.0, 10.0, 30.0):
            setup = Setup(platform=platform, interval=interval, stop_timeout=10.0)  # type: ignore[arg-type]
            suggested = make_plan(setup).stop_timeout_needed
            assert suggested is not None
            again = make_plan(Setup(platform=platform, interval=interval, stop_timeout=suggested))  # type: ignore[arg-type]
            assert again.fits
            smaller = make_plan(
                Setup(platform=platform, interval=interval, stop_timeout=suggested - 1)  # type: ignore[arg-type]
            )
            assert not smaller.fits


def test_nothing_fits_fargate_says_what_to_shorten(capsys: pytest.CaptureFixture[str]) -> None:
    code, plan = plan_json(
        capsys, "--platform", "health-check", "--longest-request", "100", "--stop-timeout", "120"
    )
    assert code == 1
    assert plan["stop_timeout_needed"] is None
    assert "no stop timeout up to Fargate's 120 s fits" in " ".join(plan["advice"])  # type: ignore[arg-type]


def test_ec2_launch_type_has_no_120_s_cap(capsys: pytest.CaptureFixture[str]) -> None:
    code, plan = plan_json(
        capsys, "--platform", "health-check", "--longest-request", "100", "--ec2"
    )
    assert code == 1
    assert plan["stop_timeout_needed"] == 61 + 100 + 5 + 5


def test_gunicorn_and_keep_alive_settings_follow_the_budget() -> None:
    plan = make_plan(Setup(stop_timeout=60.0, idle_timeout=60.0))
    # 60 - margin 5 - drain_delay 6 - cleanup 5
    assert plan.graceful_timeout == 44.0
    # The server's keep-alive outlasts the balancer's idle timeout.
    assert plan.keep_alive > 60.0


def test_text_output_names_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["plan", "--platform", "health-check", "--interval", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spotgrace plan: FITS")
    for needle in (
        "SPOTGRACE_DRAIN_DELAY=11",
        "SPOTGRACE_STOP_TIMEOUT=30",
        '"stopTimeout": 30',
        "HealthCheckPath=/readyz",
        "graceful_timeout=",
        "--timeout-keep-alive",
    ):
        assert needle in out


@pytest.mark.parametrize(
    ("option", "value"),
    [("--interval", "nan"), ("--interval", "0"), ("--stop-timeout", "-5"),
     ("--unhealthy-threshold", "0"), ("--longest-request", "inf")],
)  # fmt: skip
def test_bad_input_is_a_usage_error_naming_the_option(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["plan", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "spotgrace plan" in err
    assert option.lstrip("-").replace("-", "_") in err


def test_over_fargate_maximum_is_flagged() -> None:
    plan = make_plan(Setup(stop_timeout=200.0))
    assert any("over Fargate's maximum" in a for a in plan.advice)


def test_runs_as_a_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotgrace", "plan", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert math.isclose(json.loads(out.stdout)["drain_delay"], 6.0)
