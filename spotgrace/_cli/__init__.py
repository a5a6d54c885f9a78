"""``spotgrace`` / ``python -m spotgrace``: the command-line entry point.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``,
which registers the subcommand and sets ``func`` (taking the parsed
``argparse.Namespace`` and returning an exit code) as its default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command`` (for its own usage line in errors), else the top one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
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
    code: int = func(args)
    return code
