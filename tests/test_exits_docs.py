"""The sync worker loop of the README and docs/worker-loop.md, run as written: idle, then SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import queue
import spotgrace
jobs = queue.Queue()
def handle(job): pass
db = None
print("ready", flush=True)
"""


def _sync_loop(doc: Path) -> str:
    """The documented ``with spotgrace.graceful() as grace:`` loop, up to its blank line."""
    text = doc.read_text()
    match = re.search(r"^with spotgrace\.graceful\(.*?(?=\n\n|\n```)", text, re.M | re.S)
    assert match, f"no sync loop in {doc}"
    return match.group(0)


@pytest.mark.parametrize("doc", ["README.md", "docs/worker-loop.md"])
def test_the_documented_worker_loop_survives_being_idle_and_exits_0_on_sigterm(
    doc: str, tmp_path: Path
) -> None:
    program = tmp_path / "loop.py"
    program.write_text(PRELUDE + _sync_loop(ROOT / doc) + "\n")
    env = {"PATH": "/usr/bin:/bin", "SPOTGRACE_STOP_TIMEOUT": "5"}
    proc = subprocess.Popen(
        [sys.executable, str(program)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.5)  # idle for more than the loop's 1 s get() timeout
        assert proc.poll() is None, "the idle loop ended by itself:\n" + proc.stdout.read()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
