"""``spotgrace doctor``: check a container's shutdown set-up and say what is wrong.

Each check gives one status: ``ok``; ``info`` (nothing to do); ``warning``
(works, but probably not what you want); ``problem`` (a shutdown will go
wrong). The command exits 1 when there is a problem (``--strict``: also a
warning), else 0; ``--json`` prints the same for machines. The checks:

- ``pid1``: is PID 1 a shell that will swallow SIGTERM, or a program without
  a SIGTERM handler (which, as PID 1, ignores SIGTERM and is SIGKILLed at the
  deadline)? Read from ``/proc/1/cmdline`` and ``/proc/1/status``. Outside a
  container PID 1 is the host's, so it is described, not judged.
- ``where``: in a container or not, and the evidence (``/.dockerenv``,
  ``/run/.containerenv``, the cgroup, ``$container``, the ECS variables).
- ``config``: do the ``SPOTGRACE_*`` variables make a valid configuration?
- ``stop_timeout``: is ``SPOTGRACE_STOP_TIMEOUT`` set, and does it fit the
  Fargate maximum of 120 s?
- ``variables``: any ``SPOTGRACE_*`` variable spotgrace does not know (a typo)?
- ``ecs_metadata`` / ``ecs_agent``: are ``ECS_CONTAINER_METADATA_URI_V4`` and
  ``ECS_AGENT_URI`` set, and do they answer?
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._core._config import Options, resolve_options
from .._core._envcheck import KNOWN_PREFIXES, KNOWN_VARIABLES, is_known
from .._core._errors import ConfigError
from .._supervisor._probes import describe_pid1, get_json

__all__ = ["Check", "add_parser", "main", "run_checks"]

Status = Literal["ok", "info", "warning", "problem"]

#: Fargate's largest ``stopTimeout``; Fargate Spot gives exactly this much warning.
FARGATE_MAX_STOP_TIMEOUT = 120.0

#: cgroup path fragments that only a container's processes have.
_CONTAINER_CGROUPS = ("docker", "kubepods", "containerd", "libpod", "lxc", "ecs")


@dataclass(frozen=True)
class Check:
    """The outcome of one check, in plain words."""

    name: str
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def run_checks(
    *,
    environ: Mapping[str, str] | None = None,
    proc: Path = Path("/proc"),
    timeout: float = 2.0,
    root: Path = Path("/"),
) -> list[Check]:
    """Run every check; ``environ``/``proc``/``root`` default to this process's."""
    env = os.environ if environ is None else environ
    metadata = _check_metadata(env, timeout)
    where = _check_where(env, proc, root)
    return [
        _check_pid1(proc, in_container=bool(where.details["evidence"])),
        where,
        _check_config(env),
        _check_stop_timeout(env, metadata),
        _check_variables(env),
        metadata,
        _check_agent(env, timeout),
    ]


# --------------------------------------------------------------------------- checks


def container_evidence(env: Mapping[str, str], proc: Path, root: Path) -> list[str]:
    """Why this looks like a container: marker files, cgroups, variables; empty if none."""
    found = [m for m in ("/.dockerenv", "/run/.containerenv") if (root / m[1:]).exists()]
    if env.get("container"):
        found.append(f"$container={env['container']}")
    for who in ("self", "1"):
        try:
            text = (proc / who / "cgroup").read_text(errors="replace")
        except OSError:
            continue
        hits = sorted({c for c in _CONTAINER_CGROUPS if c in text})
        if hits:
            found.append(f"/proc/{who}/cgroup mentions {', '.join(hits)}")
            break
    if env.get("ECS_CONTAINER_METADATA_URI_V4"):
        found.append("$ECS_CONTAINER_METADATA_URI_V4 is set")
    return found


def _check_where(env: Mapping[str, str], proc: Path, root: Path) -> Check:
    evidence = container_evidence(env, proc, root)
    if evidence:
        return Check(
            "where",
            "info",
            f"Running in a container ({'; '.join(evidence)}).",
            {"evidence": evidence},
        )
    return Check(
        "where",
        "info",
        "Running on a host or VM: no container marker (/.dockerenv, /run/.containerenv, "
        "a container cgroup, $container, ECS variables). The PID 1 check applies inside "
        "the container: run `docker exec <container> spotgrace doctor` there.",
        {"evidence": []},
    )


def _check_pid1(proc: Path, *, in_container: bool = True) -> Check:
    pid1 = describe_pid1(proc)
    details = {"cmdline": pid1.cmdline, "kind": pid1.kind}
    shown = pid1.shown
    if pid1.kind == "unreadable":
        return Check("pid1", "info", f"Cannot read PID 1 ({pid1.error}); not checked.", details)
    if not in_container and pid1.kind not in ("self", "spotgrace"):
        return Check(
            "pid1",
            "info",
            f"PID 1 is {shown}, but this is not a container, so it is this host's or VM's "
            "PID 1, not your app's: not judged.",
            details,
        )
    if pid1.kind == "self":
        return Check(
            "pid1",
            "info",
            "spotgrace doctor is PID 1 itself, so there is no app to check; run it in the "
            "app's container with `docker exec` or as a child of the entrypoint.",
            details,
        )
    if pid1.kind == "host":
        return Check(
            "pid1",
            "info",
            f"PID 1 is {shown}: this looks like a host or VM, not a container. "
            "Run spotgrace doctor inside the container to check its PID 1.",
            details,
        )
    if pid1.kind == "spotgrace":
        return Check(
            "pid1",
            "ok",
            f"PID 1 is spotgrace run ({shown}): it forwards signals, reaps zombies "
            "and enforces the deadline.",
            details,
        )
    if pid1.kind == "init":
        return Check(
            "pid1",
            "ok",
            f"PID 1 is an init ({shown}): it forwards signals and reaps zombies.",
            details,
        )
    if pid1.kind == "shell":
        return Check(
            "pid1",
            "problem",
            f"PID 1 is a shell ({shown}). A shell that runs your program as a child does "
            "not pass SIGTERM on: the program keeps running until the platform SIGKILLs it. "
            'Use the exec form, ENTRYPOINT ["spotgrace", "run", "--", ...], or `exec` the '
            "program on the script's last line.",
            details,
        )
    term = signal.SIGTERM
    if term in pid1.caught:
        return Check("pid1", "ok", f"PID 1 ({shown}) handles SIGTERM.", details)
    if term in pid1.ignored:
        return Check(
            "pid1",
            "problem",
            f"PID 1 ({shown}) ignores SIGTERM: it will be SIGKILLed at the deadline with "
            "whatever it was doing unfinished. Run it under spotgrace run.",
            details,
        )
    if term in pid1.blocked:
        return Check(
            "pid1",
            "warning",
            f"PID 1 ({shown}) blocks SIGTERM: fine if it waits for it (sigwait, as an init "
            "does), otherwise SIGTERM is never acted on.",
            details,
        )
    return Check(
        "pid1",
        "problem",
        f"PID 1 ({shown}) has no SIGTERM handler. The kernel does not apply the default "
        "action to PID 1, so SIGTERM does nothing and the platform SIGKILLs it at the "
        "deadline. Handle SIGTERM (spotgrace.graceful) or run it under spotgrace run.",
        details,
    )


def _check_config(env: Mapping[str, str]) -> Check:
    try:
        options = resolve_options(environ=env, warn=False)
    except ConfigError as exc:
        return Check("config", "problem", f"The spotgrace configuration is invalid: {exc}")
    details = {
        "stop_timeout": options.stop_timeout,
        "margin": options.margin,
        "drain_delay": options.drain_delay,
        "signals": [s.name for s in options.signals],
    }
    return Check(
        "config",
        "ok",
        f"The configuration is valid: after SIGTERM the app has {options.budget:g} s "
        f"(stop_timeout {options.stop_timeout:g} s - margin {options.margin:g} s), "
        f"of which {options.drain_delay:g} s lame duck.",
        details,
    )


def _on_fargate(env: Mapping[str, str], metadata: Check) -> bool:
    launch = metadata.details.get("LaunchType")
    return env.get("AWS_EXECUTION_ENV") == "AWS_ECS_FARGATE" or launch == "FARGATE"


def _check_stop_timeout(env: Mapping[str, str], metadata: Check) -> Check:
    raw = env.get("SPOTGRACE_STOP_TIMEOUT", "").strip()
    if not raw:
        default = Options().stop_timeout
        return Check(
            "stop_timeout",
            "warning",
            f"SPOTGRACE_STOP_TIMEOUT is not set, so spotgrace assumes {default:g} s (the ECS "
            "default). Set it to the task definition's stopTimeout (120 on Fargate Spot) so "
            "the deadline matches the platform's SIGKILL.",
        )
    try:  # the library's own rules: a number of seconds, finite, > 0, at most an hour
        value = resolve_options(environ={"SPOTGRACE_STOP_TIMEOUT": raw}, warn=False).stop_timeout
    except ConfigError as exc:
        return Check("stop_timeout", "problem", f"{exc}: spotgrace refuses to start with it.")
    details = {"stop_timeout": value, "fargate": _on_fargate(env, metadata)}
    if value > FARGATE_MAX_STOP_TIMEOUT:
        if details["fargate"]:
            return Check(
                "stop_timeout",
                "problem",
                f"SPOTGRACE_STOP_TIMEOUT is {value:g} s, but Fargate SIGKILLs after at most "
                f"{FARGATE_MAX_STOP_TIMEOUT:g} s: the deadline would come after the kill. "
                "Set stopTimeout and SPOTGRACE_STOP_TIMEOUT to 120 at most.",
                details,
            )
        return Check(
            "stop_timeout",
            "warning",
            f"SPOTGRACE_STOP_TIMEOUT is {value:g} s, more than Fargate's maximum of "
            f"{FARGATE_MAX_STOP_TIMEOUT:g} s: fine on the EC2 launch type or Docker, too "
            "long on Fargate.",
            details,
        )
    return Check(
        "stop_timeout",
        "ok",
        f"SPOTGRACE_STOP_TIMEOUT is {value:g} s, within Fargate's maximum of "
        f"{FARGATE_MAX_STOP_TIMEOUT:g} s; make sure the task definition's stopTimeout "
        "says the same.",
        details,
    )


def _check_variables(env: Mapping[str, str]) -> Check:
    known = sorted(KNOWN_VARIABLES)
    unknown = sorted(k for k in env if k.startswith("SPOTGRACE_") and not is_known(k))
    if unknown:
        hints = {u: difflib.get_close_matches(u, known, n=1, cutoff=0.75) for u in unknown}
        named = [f"{u} (did you mean {h[0]}?)" if h else u for u, h in hints.items()]
        return Check(
            "variables",
            "warning",
            f"spotgrace does not know {', '.join(named)}; ignored. Known: {', '.join(known)}"
            f", {', '.join(p + '*' for p in KNOWN_PREFIXES)}.",
            {"unknown": unknown, "did_you_mean": {u: h[0] for u, h in hints.items() if h}},
        )
    return Check("variables", "ok", "Every SPOTGRACE_* variable set is one spotgrace reads.")


def _check_metadata(env: Mapping[str, str], timeout: float) -> Check:
    base = env.get("ECS_CONTAINER_METADATA_URI_V4", "").strip()
    if not base:
        return Check(
            "ecs_metadata",
            "info",
            "ECS_CONTAINER_METADATA_URI_V4 is not set: not on ECS (or an agent older than "
            "1.39), so there is no task metadata to watch for an early stop notice.",
        )
    answer = get_json(base.rstrip("/") + "/task", timeout)
    if isinstance(answer, str):
        return Check(
            "ecs_metadata",
            "problem",
            f"ECS_CONTAINER_METADATA_URI_V4 is set but {answer}.",
            {"url": base},
        )
    task = answer[1] if isinstance(answer[1], dict) else {}
    keys = ("LaunchType", "KnownStatus", "DesiredStatus", "TaskARN", "Cluster")
    details = {"url": base, **{k: task.get(k) for k in keys}}
    if answer[0] != 200 or "KnownStatus" not in task:
        return Check(
            "ecs_metadata",
            "problem",
            f"ECS_CONTAINER_METADATA_URI_V4 answers HTTP {answer[0]} without task metadata.",
            details,
        )
    said = f"launch type {task.get('LaunchType')}, known status {task.get('KnownStatus')}"
    if task.get("DesiredStatus") == "STOPPED" and task.get("KnownStatus") == "RUNNING":
        return Check(
            "ecs_metadata",
            "warning",
            f"Task metadata answers ({said}) and says a stop is under way (DesiredStatus STOPPED).",
            details,
        )
    return Check("ecs_metadata", "ok", f"Task metadata answers ({said}).", details)


def _check_agent(env: Mapping[str, str], timeout: float) -> Check:
    base = env.get("ECS_AGENT_URI", "").strip()
    if not base:
        on_ecs = bool(env.get("ECS_CONTAINER_METADATA_URI_V4"))
        return Check(
            "ecs_agent",
            "warning" if on_ecs else "info",
            "ECS_AGENT_URI is not set, so task scale-in protection is unavailable"
            + (" (it needs agent 1.62+ or Fargate platform 1.4+)." if on_ecs else "."),
        )
    answer = get_json(base.rstrip("/") + "/task-protection/v1/state", timeout)
    if isinstance(answer, str):
        return Check("ecs_agent", "problem", f"ECS_AGENT_URI is set but {answer}.", {"url": base})
    status, body = answer
    body = body if isinstance(body, dict) else {}
    details = {"url": base, "http_status": status}
    if status == 200 and ("protection" in body or "failure" in body):
        state = body.get("protection") or body.get("failure")
        return Check(
            "ecs_agent",
            "ok",
            f"The ECS agent answers the task-protection API: {json.dumps(state)}.",
            details,
        )
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return Check(
        "ecs_agent",
        "warning",
        f"The ECS agent answers HTTP {status}"
        + (f" ({error.get('Code')}: {error.get('Message')})" if error else "")
        + ": task scale-in protection may not work.",
        details,
    )


# --------------------------------------------------------------------------- command line


def _render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = ["spotgrace doctor"]
    for check in checks:
        label = "PROBLEM" if check.status == "problem" else check.status
        lines.append(f"  {label:<8} {check.name:<{width}}  {check.message}")
    problems = sum(c.status == "problem" for c in checks)
    warnings = sum(c.status == "warning" for c in checks)
    lines.append(f"{problems} problem(s), {warnings} warning(s).")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    """Register ``spotgrace doctor``."""
    p = subparsers.add_parser(
        "doctor",
        help="check this container's shutdown set-up and explain what is wrong",
        description=(
            "Check PID 1, the stop timeout, the spotgrace configuration and the ECS "
            "endpoints. Exits 1 when a problem is found."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="per HTTP request (default 2)"
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """``spotgrace doctor``: run the checks, print them, return the exit code."""
    checks = run_checks(timeout=args.timeout)
    failing = {"problem", "warning"} if args.strict else {"problem"}
    code = 1 if any(c.status in failing for c in checks) else 0
    if args.json:
        json.dump(
            {
                "ok": code == 0,
                "problems": sum(c.status == "problem" for c in checks),
                "warnings": sum(c.status == "warning" for c in checks),
                "checks": [dataclasses.asdict(c) for c in checks],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        print(_render(checks))
    return code
