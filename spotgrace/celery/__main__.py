"""``python -m spotgrace.celery health``: a health check for a worker without an HTTP port.

Exit 0 when the worker's heartbeat file is fresh and its process alive, 1
otherwise (one line on stdout says why), 2 for bad arguments. Made for an ECS
container ``healthCheck``; see ``docs/celery.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ._health import HEALTH_FILE_ENV, check_health, default_health_file

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m spotgrace.celery")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    health = sub.add_parser("health", help="exit 0 if the worker's heartbeat is fresh")
    health.add_argument(
        "--file",
        type=Path,
        default=None,
        help=f"heartbeat file (default ${HEALTH_FILE_ENV}, else {default_health_file()})",
    )
    health.add_argument(
        "--max-age",
        type=float,
        default=30.0,
        help="seconds after which the heartbeat is stale (default 30)",
    )
    health.add_argument(
        "--ready",
        action="store_true",
        help="also fail once the worker has had its shutdown notice (readiness)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.max_age > 0 and math.isfinite(args.max_age)):
        parser.error("--max-age must be a finite number of seconds, more than 0")
    result = check_health(
        args.file or default_health_file(), max_age=args.max_age, ready=args.ready
    )
    print(("ok: " if result.ok else "unhealthy: ") + result.reason, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
