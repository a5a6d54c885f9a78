#!/usr/bin/env python3
"""The project's one entry point for set-up, the demo and the test suite.

    python3 scripts/dev.py demo    # an example app survives a simulated Spot interruption
    python3 scripts/dev.py test    # lint, format check, mypy --strict, layer contracts, the whole test suite
    python3 scripts/dev.py bench   # the benchmarks under bench/
    python3 scripts/dev.py docs    # the documentation site, built into site/

It needs only Python 3.11+ and pip. It makes a virtual environment in
``.venv`` (once; again when pyproject.toml changes), installs the package with
every extra and the dev tools into it, and, for the test suite, makes sure
the programs in ``TEST_TOOLS`` (redis-server, chromium, haproxy, hey) are
there (from Debian's packages when run as root).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".spotgrace-installed"


def log(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, env=env)


def ensure_venv() -> None:
    """Create .venv and install `.[dev]` unless the stamp says it is current."""
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want and (BIN / "python").exists():
        return
    if not (BIN / "python").exists():
        log(f"creating {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    run(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "-q", "-e", ".[dev]")
    STAMP.write_text(want)


#: Programs the test suite needs, and the Debian packages that bring them.
TEST_TOOLS: dict[str, tuple[str, ...]] = {
    "redis-server": ("redis-server",),  # Redis checkpoints, Celery's broker
    "chromium": ("chromium", "fonts-dejavu-core"),  # the timeline's browser test
    "haproxy": ("haproxy",),  # the load-balancer tests
    "hey": ("hey",),  # their load generator
}
#: What the benchmarks need on top (wrk for bench/overhead.py).
BENCH_TOOLS: dict[str, tuple[str, ...]] = {**TEST_TOOLS, "wrk": ("wrk",)}
#: Services Debian's packages start system-wide; the tests start their own.
SERVICES = ("redis-server", "haproxy")


def ensure_tools(tools: dict[str, tuple[str, ...]]) -> None:
    """Install the missing programs of ``tools`` from Debian's packages (as root), in one go."""
    missing = [name for name in tools if not shutil.which(name)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"{', '.join(missing)} not found and not root: the tests that need them will skip")
        return
    packages = sorted({pkg for name in missing for pkg in tools[name]})
    log(f"installing {' '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages, env=env)
    for service in SERVICES:
        if service in packages:
            subprocess.run(["service", service, "stop"], capture_output=True, check=False)


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    ensure_tools(TEST_TOOLS)
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy", "--strict", "spotgrace")
    run(BIN / "lint-imports")  # the layer contracts in pyproject.toml
    pytest = [str(BIN / "python"), "-m", "pytest", "--cov=spotgrace", "--cov-report=term"]
    pytest += ["--durations=25", *args]  # the slowest tests, to keep the run under 20 minutes
    log(" ".join(pytest))
    return subprocess.run(pytest, cwd=ROOT, check=False).returncode


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    cmd = [str(BIN / "python"), str(ROOT / "examples" / "demo.py"), *args]
    log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def cmd_docs(args: list[str]) -> int:
    """Build the documentation site into site/ (warnings are errors)."""
    ensure_venv()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [str(BIN / "mkdocs"), "build", "--strict", "-d", str(ROOT / "site"), *args]
    log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False, env=env).returncode


def cmd_bench(args: list[str]) -> int:
    ensure_venv()
    ensure_tools(BENCH_TOOLS)
    cmd = [str(BIN / "python"), str(ROOT / "bench" / "run_all.py"), *args]
    log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "bench": cmd_bench, "docs": cmd_docs}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    try:
        return COMMANDS[sys.argv[1]](sys.argv[2:])
    except subprocess.CalledProcessError as exc:
        log(f"failed: {exc}")
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
