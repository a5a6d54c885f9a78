"""``spotgrace run [options] -- CMD ARGS...``: the command line of the supervisor.

The supervisor itself is :class:`spotgrace._supervisor._supervisor.Supervisor`; this module
parses the options (through the core's :func:`resolve_options`, so the
``SPOTGRACE_*`` variables mean the same here as in the library), configures
the event output and hands over. See ``docs/supervisor.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import structlog

from .._core._config import child_budget, resolve_options
from .._core._errors import ConfigError
from .._core._logging import configure_json_logging
from .._graceful._early_warning import make_watcher
from .._supervisor._supervisor import RunSettings, Supervisor

__all__ = ["add_parser", "configure_logging", "main"]


def _exit_code(text: str) -> int:
    try:
        code = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an exit code: {text!r}") from None
    if not 0 <= code <= 255:
        raise argparse.ArgumentTypeError(f"an exit code is 0-255, got {code}")
    return code


def configure_logging(fmt: str) -> None:
    """Events on stderr: the library's JSON lines, or plain console lines for people.

    ``spotgrace run`` is a program of its own, so unlike the library it does
    configure structlog (the library leaves that to the app).
    """
    if fmt == "json":
        configure_json_logging()
        return
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def add_parser(subparsers: Any) -> None:
    """Register ``spotgrace run``."""
    p = subparsers.add_parser(
        "run",
        help="run a command under a PID 1 supervisor with a hard shutdown deadline",
        description=(
            "Start CMD in its own process group, forward signals to it, reap zombies, "
            "and SIGKILL its group if it is still there stop_timeout - margin after the "
            "first SIGTERM. Exits with CMD's exit code (128+N if it died of signal N)."
        ),
        usage="spotgrace run [options] -- CMD [ARGS...]",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        metavar="S",
        help="seconds between the platform's SIGTERM and its SIGKILL "
        "(default: $SPOTGRACE_STOP_TIMEOUT, else 30)",
    )
    p.add_argument(
        "--margin",
        type=float,
        metavar="S",
        help="seconds kept before the platform's SIGKILL "
        "(default: $SPOTGRACE_MARGIN, else 10%% of stop_timeout within 0.5-5)",
    )
    p.add_argument(
        "-g",
        "--group",
        action="store_true",
        help="forward signals to the child's whole process group, not just the child",
    )
    p.add_argument(
        "-e",
        "--map-to-zero",
        type=_exit_code,
        action="append",
        default=[],
        metavar="CODE",
        help="report this child exit code as 0 (repeatable), e.g. -e 143",
    )
    p.add_argument(
        "--watch",
        metavar="SOURCES",
        help="early warning: auto, ecs, ec2 (comma-separated), or off; a notice sends the "
        "child SIGTERM before the platform does (default: $SPOTGRACE_WATCH, else off; "
        "needs spotgrace[watch])",
    )
    p.add_argument(
        "--watch-interval",
        type=float,
        metavar="S",
        help="seconds between polls of each source (default: $SPOTGRACE_WATCH_INTERVAL, else 5)",
    )
    p.add_argument(
        "--log-format",
        choices=("json", "console"),
        default="json",
        help="how the supervisor's events are written to stderr (default: json)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """``spotgrace run``: parse, validate, supervise; returns the exit code."""
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(
            "spotgrace run: no command given (spotgrace run [options] -- CMD ...)", file=sys.stderr
        )
        return 2
    configure_logging(args.log_format)  # first: resolving may log config warnings
    try:
        options = resolve_options(
            stop_timeout=args.stop_timeout,
            margin=args.margin,
            watch=args.watch,
            watch_interval=args.watch_interval,
            labels={
                "stop_timeout": "--stop-timeout",
                "margin": "--margin",
                "watch": "--watch",
                "watch_interval": "--watch-interval",
            },
        )
    except ConfigError as exc:
        print(f"spotgrace run: {exc}", file=sys.stderr)
        return 2
    # The child's budget ends before ours, so a spotgrace app's watchdog reports first.
    os.environ.update(child_budget(options.stop_timeout, options.margin))
    supervisor = Supervisor(
        RunSettings(
            command=tuple(command),
            options=options,
            group=args.group,
            map_to_zero=frozenset(args.map_to_zero),
        )
    )
    try:
        # The same watchers as graceful(watch=...); a notice calls notify().
        watcher = make_watcher(options, supervisor.notify)
    except ConfigError as exc:
        print(f"spotgrace run: {exc}", file=sys.stderr)
        return 2
    # Started once the supervisor's signals are blocked, so the watcher's
    # thread inherits the mask; a daemon thread, it ends with the process.
    code = supervisor.run(before_spawn=None if watcher is None else watcher.start_thread)
    if not supervisor.flushed:
        # stderr is stalled and the event writer is stuck in a write: the
        # interpreter's exit would wait on that stream's lock. Leave now.
        os._exit(code)
    return code
