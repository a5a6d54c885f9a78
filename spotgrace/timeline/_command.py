"""``spotgrace timeline [FILE|-] [--html OUT]``: draw the shutdowns in a log.

Prints the text timeline of every shutdown found (``--quiet``: only the
verdicts) and, with ``--html``, writes the picture as one self-contained HTML
file (mode 0600, written atomically). Exit status: 0 when every shutdown is
clean, 1 when one is not, 2 for a usage error, an unreadable file or an input
without any shutdown.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, TextIO

from . import read_shutdowns, render_html, render_text
from ._files import bounded_lines, write_private
from ._safe import clean_text

__all__ = ["add_parser", "main"]


def add_parser(subparsers: Any) -> None:
    """Register ``timeline`` on the ``spotgrace`` command line."""
    p = subparsers.add_parser(
        "timeline",
        help="draw the shutdowns in a log of spotgrace events (text, or an HTML picture)",
        description=(
            "Read spotgrace's JSON event lines (SPOTGRACE_EVENTS_FILE, the app's JSON logs, "
            "docker logs, a CloudWatch export) from FILE or stdin, print a timeline and a "
            "verdict for each shutdown, and optionally write an HTML picture. "
            "Exit status 0 = every shutdown clean, 1 = not clean, 2 = no shutdown found."
        ),
        epilog="example: spotgrace timeline events.jsonl --html shutdown.html",
    )
    p.add_argument("file", nargs="?", default="-", help="the log to read (default: - = stdin)")
    p.add_argument("--html", metavar="OUT", help="also write the picture to this HTML file")
    p.add_argument("--title", default="Shutdown timeline", help="the HTML page's title")
    p.add_argument("--quiet", action="store_true", help="print only the verdicts")
    p.set_defaults(func=main)


def main(
    args: argparse.Namespace, *, stdin: TextIO | None = None, out: TextIO | None = None
) -> int:
    """Run ``spotgrace timeline``; returns the exit status."""
    if out is None:
        out = sys.stdout
        # A log's non-ASCII text on a terminal whose encoding cannot show it
        # (a C locale without UTF-8): escaped, not a UnicodeEncodeError.
        reconfigure = getattr(out, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        if args.file == "-":
            source = stdin or _stdin()
            if source is None:
                print("spotgrace timeline: no stdin to read (it is closed)", file=sys.stderr)
                return 2
            shutdowns, stats = read_shutdowns(bounded_lines(source))
        else:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                shutdowns, stats = read_shutdowns(bounded_lines(f))
    except OSError as exc:
        print(f"spotgrace timeline: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.quiet:
        for s in shutdowns:
            out.write(f"{s.process}: {s.verdict}\n")
        out.write(f"input: {stats.summary()}\n")
    else:
        out.write(render_text(shutdowns, stats))
    if args.html:
        try:
            write_private(Path(args.html), render_html(shutdowns, stats, title=args.title))
        except OSError as exc:
            print(f"spotgrace timeline: cannot write {args.html}: {exc}", file=sys.stderr)
            return 2
        out.write(f"wrote {clean_text(args.html)}\n")  # a path may not be UTF-8
    out.flush()
    if not shutdowns:
        print("spotgrace timeline: no shutdown found in the input", file=sys.stderr)
        return 2
    return 0 if all(s.clean for s in shutdowns) else 1


def _stdin() -> TextIO | None:
    """Standard input decoded as UTF-8 whatever the locale, bad bytes replaced; None if closed."""
    if sys.stdin is None:
        return None
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text only (a test's StringIO)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace")
