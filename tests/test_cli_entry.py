"""The ``spotgrace`` entry point: a closed pipe and a missing extra, for every subcommand.

The pipe's reading end is closed before the command starts, so every write
fails with EPIPE at once: no timing is involved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EVENTS = "\n".join(
    [
        '{"event": "shutdown.started", "ts": 1700000000.0, "pid": 7, "signal": "SIGTERM", '
        '"stop_timeout": 30, "margin": 3, "deadline_in": 27, "drain_delay": 0}',
        '{"event": "shutdown.finished", "ts": 1700000000.1, "pid": 7, "clean": true, '
        '"elapsed": 0.1}',
    ]
)


def _run_into_closed_pipe(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "spotgrace", *args],
            input=stdin,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [["plan"], ["plan", "--json"], ["timeline", "-"], ["timeline", "--quiet", "-"]],
)
def test_a_closed_pipe_ends_quietly_with_141(args: list[str]) -> None:
    proc = _run_into_closed_pipe(args, stdin=EVENTS)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, proc.stderr


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], ["timeline", "--help"]])
def test_help_into_a_closed_pipe_leaves_no_traceback(args: list[str]) -> None:
    proc = _run_into_closed_pipe(args)
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)  # argparse itself may swallow the failed write


def test_an_open_pipe_still_gets_everything() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotgrace", "plan", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("}")


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("aiohttp", ["simulate", "--interrupt-after", "0.1", "--", "true"], "aiohttp"),
        ("boto3", ["fleet", "match", "/dev/null"], "boto3"),
    ],
)
def test_a_missing_extra_names_the_extra(
    tmp_path: Path, blocked: str, argv: list[str], extra: str
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from spotgrace._cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"spotgrace {argv[0]}: " in proc.stderr
    assert extra in proc.stderr
    assert "pip install" in proc.stderr
