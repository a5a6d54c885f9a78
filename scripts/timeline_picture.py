#!/usr/bin/env python3
"""Regenerate ``docs/img/timeline.png``: the picture of a real rehearsed interruption.

    .venv/bin/python scripts/timeline_picture.py

Runs ``spotgrace simulate --html`` on ``examples/worker_app.py`` (the README
demo's worker), then screenshots the page in headless Chromium (installed by
``python3 scripts/dev.py test`` as root). Prints what it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "timeline.png"
sys.path.insert(0, str(ROOT))

from tests.helpers.browser import screenshot  # noqa: E402


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    with tempfile.TemporaryDirectory(prefix="spotgrace-picture-") as tmp:
        page = Path(tmp) / "rehearsal.html"
        cmd = [sys.executable, "-m", "spotgrace", "simulate", "--quiet"]
        cmd += ["--interrupt-after", "2.5", "--stop-timeout", "10", "--html", str(page)]
        cmd += ["--", "python", "examples/worker_app.py"]
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        if done.returncode != 0 or not page.exists():
            print(f"the rehearsal failed (exit {done.returncode})", file=sys.stderr)
            return 1
        OUT.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, OUT, width=1060, height=545)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
