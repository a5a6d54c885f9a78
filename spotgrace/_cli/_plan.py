"""``spotgrace plan``: the shutdown budget behind a load balancer, worked out.

Given the balancer's health check, how the platform takes a target out of
rotation, the stop timeout and what the app needs (its longest request, its
cleanup), it prints the ``drain_delay``, ``stop_timeout``, target-group,
gunicorn and uvicorn settings that fit, or says plainly that they cannot fit
and what to change. Exit status: 0 when the plan fits, 1 when it does not,
2 for bad input. The reasoning is in ``docs/load-balancers.md``.

The rule: a balancer that learns of the shutdown only through its health
check may send new requests for up to ``interval x unhealthy_threshold +
timeout`` after readiness turns red (the last failing check may time out
rather than answer 503), so the lame duck (``drain_delay``) must last that
long; then the longest request must finish, the hooks must run, and the
margin must be left, all within ``stop_timeout``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from .._core._config import default_margin

__all__ = ["PLATFORMS", "Plan", "Setup", "add_parser", "main", "make_plan"]

Platform = Literal["ecs", "kubernetes", "health-check"]

#: How each platform takes a stopping target out of rotation.
PLATFORMS: dict[str, str] = {
    "ecs": (
        "ECS deregisters the task from its target groups before SIGTERM (Fargate Spot "
        "too, since 2023); the lame duck covers the balancer's propagation delay"
    ),
    "kubernetes": (
        "Kubernetes removes the pod's endpoints at the same time as SIGTERM; the lame "
        "duck covers the propagation to kube-proxy and ingress controllers"
    ),
    "health-check": (
        "the balancer learns of the shutdown only from its health check on /readyz; "
        "the lame duck must outlast interval x unhealthy threshold + check timeout"
    ),
}

#: Fargate's maximum ``stopTimeout``, and the length of a Spot notice.
FARGATE_MAX_STOP_TIMEOUT = 120.0
#: The ALB's shortest health-check interval, lowest unhealthy threshold and
#: shortest health-check timeout.
ALB_MIN_INTERVAL = 5.0
ALB_MIN_THRESHOLD = 2
ALB_MIN_CHECK_TIMEOUT = 2.0
#: The largest number of seconds (about 11 days) and of failed checks taken:
#: beyond them the input is a typo, and the arithmetic would lose whole seconds.
MAX_SECONDS = 1e6
MAX_THRESHOLD = 1000


@dataclass(frozen=True, kw_only=True)
class Setup:
    """What the planner is told: the balancer, the platform and the app."""

    platform: Platform = "ecs"
    interval: float = 30.0
    unhealthy_threshold: int = 2
    check_timeout: float = 5.0
    propagation: float = 5.0
    stop_timeout: float = 30.0
    longest_request: float = 10.0
    cleanup: float = 5.0
    idle_timeout: float = 60.0
    #: ECS on Fargate: the stop timeout is capped at 120 s. Always False on Kubernetes.
    fargate: bool = True

    def __post_init__(self) -> None:
        for name in ("interval", "propagation", "stop_timeout", "idle_timeout"):
            _check(name, getattr(self, name), positive=True)
        for name in ("longest_request", "cleanup", "check_timeout"):
            _check(name, getattr(self, name), positive=False)
        if not 1 <= self.unhealthy_threshold <= MAX_THRESHOLD:
            raise ValueError(
                f"unhealthy_threshold must be between 1 and {MAX_THRESHOLD}, "
                f"got {self.unhealthy_threshold}"
            )
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {sorted(PLATFORMS)}, got {self.platform!r}")
        if self.platform == "kubernetes":
            object.__setattr__(self, "fargate", False)  # no Fargate cap on a pod's grace period


def _check(name: str, value: float, *, positive: bool) -> None:
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > MAX_SECONDS:
        want = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name} must be a finite number {want} and at most {MAX_SECONDS:g} s, got {value!r}"
        )


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The settings that follow from a :class:`Setup`, and whether they fit."""

    setup: Setup
    #: How long the balancer may still send new requests after readiness turns red.
    exposure: float
    drain_delay: float
    margin: float
    #: drain_delay + longest_request + cleanup + margin.
    needed: float
    fits: bool
    #: The smallest stop timeout that fits (None: none fits the platform's maximum).
    stop_timeout_needed: float | None
    graceful_timeout: float
    keep_alive: float
    advice: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain data, for ``--json``."""
        return dataclasses.asdict(self)


def _exposure(setup: Setup, interval: float, threshold: int, check_timeout: float) -> float:
    if setup.platform == "health-check":
        return _health_check_exposure(interval, threshold, check_timeout)
    return setup.propagation


def _health_check_exposure(interval: float, threshold: int, check_timeout: float) -> float:
    # The first failing check is sent up to one interval after the notice, the
    # last one threshold - 1 intervals later; it fails at once (503) or only
    # when it times out (an overloaded replica).
    return interval * threshold + check_timeout


def _needed(setup: Setup, exposure: float, stop_timeout: float) -> float:
    """The stop timeout the plan needs, for a margin worked out from ``stop_timeout``.

    Two bounds: the whole sequence (lame duck, the longest request, the hooks,
    the margin) must fit, and the lame duck gets at most half of ``stop_timeout
    - margin`` (spotgrace caps it there: ``docs/semantics.md``).
    """
    # One second on top of the exposure: the last health check, or the last
    # propagation step, lands after the lame duck has begun counting.
    drain_delay = math.ceil(exposure) + 1.0
    margin = default_margin(stop_timeout)
    sequence = drain_delay + setup.longest_request + setup.cleanup + margin
    return max(sequence, 2 * drain_delay + margin)


def _smallest_stop_timeout(setup: Setup, exposure: float) -> float | None:
    cap = FARGATE_MAX_STOP_TIMEOUT if setup.fargate else MAX_SECONDS
    # The margin grows with the stop timeout: step until the budget holds.
    t = float(math.ceil(_needed(setup, exposure, 0.0)))
    while t <= cap:
        if _needed(setup, exposure, t) <= t:
            return t
        t += 1.0
    return None


def make_plan(setup: Setup) -> Plan:
    """Work out the settings for ``setup``; never raises for a plan that does not fit."""
    exposure = _exposure(setup, setup.interval, setup.unhealthy_threshold, setup.check_timeout)
    drain_delay = math.ceil(exposure) + 1.0
    margin = default_margin(setup.stop_timeout)
    needed = _needed(setup, exposure, setup.stop_timeout)
    fits = needed <= setup.stop_timeout
    advice: list[str] = []
    smallest = _smallest_stop_timeout(setup, exposure)
    if setup.fargate and setup.stop_timeout > FARGATE_MAX_STOP_TIMEOUT:
        advice.append(
            f"stop_timeout {setup.stop_timeout:g} s is over Fargate's maximum of "
            f"{FARGATE_MAX_STOP_TIMEOUT:g} s: ECS will refuse the task definition"
        )
    if not fits:
        cap_name = (
            f"Fargate's {FARGATE_MAX_STOP_TIMEOUT:g} s"
            if setup.fargate
            else f"{MAX_SECONDS:.0f} s (on EC2)"
        )
        if smallest is not None:
            setting = (
                "terminationGracePeriodSeconds" if setup.platform == "kubernetes" else "stopTimeout"
            )
            advice.append(f"raise {setting} to at least {smallest:.0f} s")
        else:
            advice.append(
                f"no stop timeout up to {cap_name} fits: "
                "shorten the health check, the longest request or the cleanup"
            )
        if setup.platform == "health-check":
            quick = _exposure(setup, ALB_MIN_INTERVAL, ALB_MIN_THRESHOLD, ALB_MIN_CHECK_TIMEOUT)
            if quick < exposure:
                t = _smallest_stop_timeout(setup, quick)
                advice.append(
                    f"or check health every {ALB_MIN_INTERVAL:g} s with an unhealthy "
                    f"threshold of {ALB_MIN_THRESHOLD} and a timeout of "
                    f"{ALB_MIN_CHECK_TIMEOUT:g} s (the ALB's minimum): then "
                    + (f"a stopTimeout of {t:.0f} s fits" if t is not None else "still no fit")
                )
        # Rounded down: the number printed must itself fit when fed back.
        spare = (
            math.floor((setup.stop_timeout - (drain_delay + setup.cleanup + margin)) * 100) / 100
        )
        if spare > 0 and 2 * drain_delay + margin <= setup.stop_timeout:
            advice.append(
                f"or keep requests under {spare:.2f} s: a longer one is cut off at the deadline"
            )
    if setup.check_timeout >= setup.interval:
        advice.append(
            f"an ALB refuses a health-check timeout ({setup.check_timeout:g} s) that is not "
            f"shorter than the interval ({setup.interval:g} s)"
        )
    if setup.platform != "health-check":
        unplanned = _health_check_exposure(
            setup.interval, setup.unhealthy_threshold, setup.check_timeout
        )
        advice.append(
            "a stop that does not go through the platform's deregistration (a task "
            "stopped outside its service, a replica behind another balancer) is exposed "
            f"for interval x threshold + check timeout = {unplanned:g} s: "
            "plan for it with --platform health-check"
        )
    # What gunicorn's master may wait for its workers once intake has stopped.
    graceful_timeout = max(0.0, setup.stop_timeout - margin - drain_delay - setup.cleanup)
    return Plan(
        setup=setup,
        exposure=exposure,
        drain_delay=drain_delay,
        margin=margin,
        needed=needed,
        fits=fits,
        stop_timeout_needed=smallest,
        graceful_timeout=graceful_timeout,
        # A server must not close a keep-alive connection the balancer may still
        # reuse: its idle timeout must outlast the balancer's.
        keep_alive=setup.idle_timeout + 5.0,
        advice=tuple(advice),
    )


def render(plan: Plan) -> str:
    """The plan as text for a terminal."""
    s = plan.setup
    verdict = "FITS" if plan.fits else "DOES NOT FIT"
    lines = [
        f"spotgrace plan: {verdict}",
        "",
        f"platform      {s.platform}: {PLATFORMS[s.platform]}",
        f"health check  every {s.interval:g} s, unhealthy after {s.unhealthy_threshold}, "
        f"timeout {s.check_timeout:g} s (balancer idle timeout {s.idle_timeout:g} s)",
        f"exposure      the balancer may send new requests for {plan.exposure:g} s after the notice",
        "",
        f"budget        drain_delay {plan.drain_delay:g} + longest request {s.longest_request:g} + cleanup {s.cleanup:g} + margin {plan.margin:g}",
        f"              and the lame duck at most half of stop_timeout - margin: "
        f"2 x {plan.drain_delay:g} + {plan.margin:g}",
        f"              = {plan.needed:g} s needed, stop_timeout {s.stop_timeout:g} s",
        "",
        "settings",
        f"  SPOTGRACE_DRAIN_DELAY={plan.drain_delay:g}",
        *_platform_settings(s),
        f"  gunicorn: graceful_timeout={plan.graceful_timeout:g} keepalive={plan.keep_alive:g}"
        " (spotgrace.gunicorn derives both from the budget)",
        f"  uvicorn: --timeout-keep-alive {plan.keep_alive:g}",
    ]
    if plan.advice:
        lines += ["", "what to change" if not plan.fits else "notes"]
        lines += [f"  - {a}" for a in plan.advice]
    return "\n".join(lines)


def _platform_settings(s: Setup) -> list[str]:
    """Where the stop timeout and the health check are set, on this platform."""
    stop = math.ceil(s.stop_timeout)
    if s.platform == "kubernetes":
        return [
            f"  SPOTGRACE_STOP_TIMEOUT={s.stop_timeout:g}     (pod spec: "
            f"terminationGracePeriodSeconds: {stop})",
            f"  readinessProbe: httpGet path=/readyz periodSeconds={math.ceil(s.interval)} "
            f"failureThreshold={s.unhealthy_threshold} timeoutSeconds={math.ceil(s.check_timeout)}",
        ]
    return [
        f'  SPOTGRACE_STOP_TIMEOUT={s.stop_timeout:g}     (task definition: "stopTimeout": {stop})',
        f"  target group: HealthCheckPath=/readyz HealthCheckIntervalSeconds={s.interval:g} "
        f"UnhealthyThresholdCount={s.unhealthy_threshold} "
        f"HealthCheckTimeoutSeconds={math.ceil(s.check_timeout)}",
    ]


def add_parser(subparsers: Any) -> None:
    """Register ``spotgrace plan``."""
    d = Setup()
    p = subparsers.add_parser(
        "plan",
        help="work out drain_delay and stop_timeout for a service behind a load balancer",
        description=(
            "Print the drain_delay, stop_timeout, target-group, gunicorn and uvicorn "
            "settings that fit, or say what to change. Defaults: an ALB target group's "
            "defaults and ECS's default stop timeout. Exits 1 when the plan does not fit."
        ),
    )
    p.add_argument("--platform", choices=sorted(PLATFORMS), default=d.platform)
    p.add_argument("--interval", type=float, default=d.interval, metavar="S",
                   help=f"health-check interval (ALB default {d.interval:g})")  # fmt: skip
    p.add_argument("--unhealthy-threshold", type=int, default=d.unhealthy_threshold,
                   metavar="N", help="failed checks before the target is out (ALB default 2)")  # fmt: skip
    p.add_argument("--check-timeout", type=float, default=d.check_timeout, metavar="S",
                   help="health-check timeout (ALB default 5, minimum 2)")  # fmt: skip
    p.add_argument("--propagation", type=float, default=d.propagation, metavar="S",
                   help="how long a deregistration takes to reach the balancer (default 5)")  # fmt: skip
    p.add_argument("--stop-timeout", type=float, default=d.stop_timeout, metavar="S",
                   help="the task's stopTimeout (ECS default 30, Fargate max 120)")  # fmt: skip
    p.add_argument("--longest-request", type=float, default=d.longest_request, metavar="S")
    p.add_argument("--cleanup", type=float, default=d.cleanup, metavar="S",
                   help="what the cleanup hooks need (default 5)")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout, metavar="S",
                   help="the balancer's idle timeout (ALB default 60)")  # fmt: skip
    p.add_argument("--ec2", action="store_true", help="EC2 launch type: no 120 s cap")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace) -> int:
    """``spotgrace plan``: print the plan; 0 when it fits, 1 when not, 2 for bad input."""
    try:
        setup = Setup(
            platform=args.platform,
            interval=args.interval,
            unhealthy_threshold=args.unhealthy_threshold,
            check_timeout=args.check_timeout,
            propagation=args.propagation,
            stop_timeout=args.stop_timeout,
            longest_request=args.longest_request,
            cleanup=args.cleanup,
            idle_timeout=args.idle_timeout,
            fargate=not args.ec2,
        )
    except ValueError as exc:
        args.parser.error(str(exc))  # exits 2 with this command's usage
    plan = make_plan(setup)
    # Every number is finite (Setup bounds them): allow_nan=False keeps it strict JSON.
    print(json.dumps(plan.as_dict(), indent=2, allow_nan=False) if args.json else render(plan))
    return 0 if plan.fits else 1
