"""Tasks lost per 100 interruptions: plain Celery, acks_late, Celery's soft shutdown, spotgrace.celery.

    .venv/bin/python bench/celery_loss.py --trials 50            # each mode

Modes: ``plain`` (Celery's defaults), ``acks_late``, ``soft`` (Celery 5.5+'s
own soft shutdown with the settings spotgrace derives, ``REMAP_SIGTERM=SIGQUIT``,
no spotgrace), ``spotgrace`` (``spotgrace.celery.install(app)``).
    .venv/bin/python bench/celery_loss.py --trials 100 --modes spotgrace

Starts its own redis-server on 127.0.0.1 and real ``celery worker`` processes
of ``tests/programs/celery_app.py``. Each interruption is an ECS stop (SIGTERM,
then SIGKILL of the whole session at ``stop_timeout``) or, for a quarter of
them, a crash (SIGKILL at once); tasks last 0.1 s to 2 x ``stop_timeout``, so
some fit the budget and some do not. A standby worker runs throughout. Redis's
``visibility_timeout`` is 60 s in every mode (``--visibility``; its default is
one hour: the messages of a killed acks_late worker come back only after it). See ``tests/helpers/celery_trials.py`` for what counts as lost and as an
allowed re-run. Prints one JSON summary per mode, and a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._redis import _start  # noqa: E402 - after the path set-up
from tests.helpers.celery_trials import run_trials  # noqa: E402

MODES = ("plain", "acks_late", "soft", "spotgrace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="interruptions per mode")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    parser.add_argument("--stop-timeout", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--visibility",
        type=float,
        default=60.0,
        help="Redis visibility_timeout, every mode (default 60 s: longer than a message "
        "can wait in a prefetch-4 buffer plus its run, so no live message is redelivered)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep workers' event files here")
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the summaries here (JSON)"
    )
    args, _unknown = parser.parse_known_args()  # run_all.py may pass --runs
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}")
    summaries = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep) if args.keep else scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        proc, server = _start(Path(tmp))
        try:
            for mode in modes:
                began = time.monotonic()
                report = run_trials(
                    server.url,
                    Path(tmp) / mode,
                    mode=mode,
                    trials=args.trials,
                    seed=args.seed,
                    stop_timeout=args.stop_timeout,
                    visibility=args.visibility,
                    log=lambda m: print(m, file=sys.stderr, flush=True),
                )
                summary = {**report.summary(), "wall_s": round(time.monotonic() - began, 1)}
                summary["stop_timeout"] = args.stop_timeout
                summary["seed"] = args.seed
                summary["visibility_timeout"] = args.visibility
                print(json.dumps(summary), flush=True)
                summaries.append(summary)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print()
    head = f"{'mode':<10} {'interr.':>7} {'tasks':>5} {'lost':>4} {'lost/100':>8} {'reruns':>6} {'2x done':>7} {'pickup p50/max (SIGTERM)':>25} {'exit p50/max':>13}"
    print(head)
    for s in summaries:
        pick = s["pickup_after_sigterm_s"]
        ex = s["exit_after_sigterm_s"]
        pick_s = f"{pick['median']}/{pick['max']} s (n={pick['n']})" if pick else "-"
        ex_s = f"{ex['median']}/{ex['max']} s" if ex else "-"
        print(
            f"{s['mode']:<10} {s['interruptions']:>7} {s['tasks']:>5} {s['lost']:>4} "
            f"{s['lost_per_100_interruptions']:>8} {s['reruns']:>6} {s['completed_twice']:>7} "
            f"{pick_s:>25} {ex_s:>13}"
        )
    if args.out:
        args.out.write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
