"""``spotgrace`` / ``python -m spotgrace``: the command-line entry point.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``,
which registers the subcommand and sets ``func`` (taking the parsed
``argparse.Namespace`` and returning an exit code) as its default.

Two failures are handled here, for every subcommand: a reader that goes away
(``spotgrace plan | head -1``) ends the command quietly with status 141
(128 + SIGPIPE, what a shell shows for a program killed by SIGPIPE), and a
subcommand that needs an optional dependency that is not installed says which
extra to install and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from .._core._errors import MissingExtraError

#: Modules that contribute a subcommand, in the order ``--help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "spotgrace._cli._run",
    "spotgrace._cli._doctor",
    "spotgrace._cli._simulate",
    "spotgrace._cli._plan",
    "spotgrace.timeline._command",
    "spotgrace._cli._fleet",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="spotgrace",
        description="Graceful shutdown for containerised services.",
    )
    parser.add_argument("--version", action="version", version=f"spotgrace {__version__}")
    # dest is not "command": that is the child command of run and simulate.
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


#: Optional dependencies a subcommand may need, and the extra that installs each.
EXTRAS: dict[str, str] = {
    "aiohttp": "aiohttp",
    "httpx": "watch",
    "uvicorn": "asgi",
    "redis": "redis",
    "boto3": "fleet",  # of the subcommands, only fleet needs boto3
    "botocore": "fleet",
}

#: The exit status when the reader of stdout went away: 128 + SIGPIPE.
BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command`` (for its own usage line in errors), else the top one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        try:
            return _main(argv)
        finally:  # --help and usage errors leave by SystemExit: flush them here too
            if sys.stdout is not None:
                sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra:
        # `spotgrace run --bogus`: the error and usage of `run`, not of `spotgrace`.
        _subparser(parser, getattr(args, "subcommand", None)).error(
            f"unrecognized arguments: {' '.join(extra)}"
        )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code: int = func(args)
    except MissingExtraError as exc:  # an integration's own check: it names the extra
        print(f"spotgrace {args.subcommand}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS:
            raise
        print(
            f"spotgrace {args.subcommand}: this needs {missing}, which is not installed: "
            f"pip install 'spotgrace[{EXTRAS[missing]}]'",
            file=sys.stderr,
        )
        return 2
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
