"""``spotgrace plan``: drain_delay and stop_timeout worked out from the balancer's settings."""

from __future__ import annotations

import dataclasses
import json
import math
import re
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
    assert plan["exposure"] == 65.0  # 30 s x 2 + the 5 s check timeout
    assert plan["drain_delay"] == 66.0
    # The lame duck gets at most half of stop_timeout - margin: 2 x 66 + 5 > Fargate's 120 s.
    assert plan["stop_timeout_needed"] is None
    advice = " ".join(plan["advice"])  # type: ignore[arg-type]
    assert "no stop timeout up to Fargate's 120 s fits" in advice
    assert "every 5 s" in advice


def test_the_suggested_stop_timeout_fits_when_fed_back() -> None:
    for platform in ("ecs", "kubernetes", "health-check"):
        for interval in (5.0, 10.0, 30.0):
            kw = {"platform": platform, "interval": interval, "fargate": False}
            suggested = make_plan(Setup(stop_timeout=10.0, **kw)).stop_timeout_needed  # type: ignore[arg-type]
            assert suggested is not None
            again = make_plan(Setup(stop_timeout=suggested, **kw))  # type: ignore[arg-type]
            assert again.fits
            assert again.drain_delay <= (suggested - again.margin) / 2  # the lame duck's cap
            smaller = make_plan(Setup(stop_timeout=suggested - 1, **kw))  # type: ignore[arg-type]
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
    assert plan["stop_timeout_needed"] == 66 + 100 + 5 + 5


def test_gunicorn_and_keep_alive_settings_follow_the_budget() -> None:
    plan = make_plan(Setup(stop_timeout=60.0, idle_timeout=60.0))
    # 60 - margin 5 - drain_delay 6 - cleanup 5
    assert plan.graceful_timeout == 44.0
    # The server's keep-alive outlasts the balancer's idle timeout.
    assert plan.keep_alive > 60.0


def test_text_output_names_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--platform", "health-check", "--interval", "5", "--check-timeout", "2"]
    assert cli_main(["plan", *argv, "--stop-timeout", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spotgrace plan: FITS")
    for needle in (
        "SPOTGRACE_DRAIN_DELAY=13",  # 5 s x 2 + 2 s timeout, and one second
        "SPOTGRACE_STOP_TIMEOUT=40",
        '"stopTimeout": 40',
        "HealthCheckPath=/readyz",
        "HealthCheckTimeoutSeconds=2",
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


# ---------------------------------------------------------------- review fixes


def test_a_check_that_times_out_lengthens_the_exposure() -> None:
    # docs/ecs-deployment.md: checks every 5 s, timeout 2, threshold 2 -> out after ~12 s.
    plan = make_plan(
        Setup(platform="health-check", interval=5.0, unhealthy_threshold=2, check_timeout=2.0)
    )
    assert plan.exposure == 12.0
    assert plan.drain_delay > 12.0


def test_a_timeout_not_shorter_than_the_interval_is_flagged() -> None:
    plan = make_plan(Setup(platform="health-check", interval=5.0, check_timeout=5.0))
    assert any("refuses a health-check timeout" in a for a in plan.advice)


@pytest.mark.parametrize(
    "argv",
    [
        ["--platform", "health-check", "--interval", "1e308"],
        ["--unhealthy-threshold", "1" + "0" * 400],
        ["--ec2", "--longest-request", "1.7e308", "--cleanup", "1.7e308"],
        ["--idle-timeout", "1e300"],
    ],
)
def test_huge_input_is_a_usage_error_not_a_traceback(argv: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotgrace", "plan", "--json", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "spotgrace plan: error:" in out.stderr


def _strict_json(text: str) -> dict[str, object]:
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} is not JSON")

    doc: dict[str, object] = json.loads(text, parse_constant=refuse)
    return doc


def test_json_is_strict_at_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--ec2", "--longest-request", "1e6", "--cleanup", "1e6"],
        [
            "--ec2",
            "--platform",
            "health-check",
            "--interval",
            "1e6",
            "--unhealthy-threshold",
            "1000",
        ],
        ["--idle-timeout", "1e6", "--stop-timeout", "1e-9"],
    ):
        cli_main(["plan", "--json", *argv])
        plan = _strict_json(capsys.readouterr().out)
        assert isinstance(plan["needed"], float)


def test_every_number_in_the_advice_fits_when_fed_back() -> None:
    """The stop timeout and the request length it suggests, as printed, do fit."""
    checked = 0
    for platform in ("ecs", "health-check"):
        for stop in (7.0, 30.0, 61.3, 120.0):
            for longest in (0.0, 3.33333, 47.123456, 250.0):
                for cleanup in (0.0, 2.71828, 22.776913):
                    setup = Setup(
                        platform=platform,  # type: ignore[arg-type]
                        propagation=7.726563,
                        stop_timeout=stop,
                        longest_request=longest,
                        cleanup=cleanup,
                    )
                    for advice in make_plan(setup).advice:
                        for pattern, field in (
                            (r"at least (\S+) s", "stop_timeout"),
                            (r"keep requests under (\S+) s", "longest_request"),
                        ):
                            m = re.search(pattern, advice)
                            if m:
                                again = dataclasses.replace(setup, **{field: float(m[1])})
                                assert make_plan(again).fits, (setup, advice)
                                checked += 1
    assert checked > 20


def test_kubernetes_gets_no_fargate_cap_and_its_own_setting_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = make_plan(Setup(platform="kubernetes", stop_timeout=200.0))
    assert plan.fits
    assert not any("Fargate" in a for a in plan.advice)
    long = make_plan(Setup(platform="kubernetes", longest_request=200.0))
    assert long.stop_timeout_needed == 6 + 200 + 5 + 5
    assert any("terminationGracePeriodSeconds to at least 216 s" in a for a in long.advice)
    assert cli_main(["plan", "--platform", "kubernetes"]) == 0
    out = capsys.readouterr().out
    assert "terminationGracePeriodSeconds: 30" in out
    assert "readinessProbe: httpGet path=/readyz" in out
    assert "task definition" not in out
    assert "target group" not in out
