#!/usr/bin/env python3
"""The project's one entry point for set-up, the demo and the test suite.

    python3 scripts/dev.py demo    # an example app survives a simulated Spot interruption
    python3 scripts/dev.py test    # lint, format check, mypy --strict, layer contracts, the whole test suite
    python3 scripts/dev.py bench   # the benchmarks under bench/

It needs only Python 3.11+ and pip. It makes a virtual environment in
``.venv`` (once; again when pyproject.toml changes), installs the package with
every extra and the dev tools into it, and, for the test suite, makes sure a
``redis-server`` binary is there (from Debian's packages when run as root).
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


def ensure_redis() -> None:
    """A redis-server binary for the Redis tests: on PATH already, or from apt as root."""
    if shutil.which("redis-server"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing redis-server from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server", env=env)
        # Debian's package starts a system-wide server; the tests start their own.
        subprocess.run(["service", "redis-server", "stop"], capture_output=True, check=False)
        return
    log("redis-server not found and not root: the Redis tests will skip (not allowed in CI)")


def ensure_lb_tools() -> None:
    """HAProxy and hey for the load-balancer tests and bench: on PATH already, or from apt as root."""
    missing = [pkg for pkg in ("haproxy", "hey") if not shutil.which(pkg)]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)} from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
        # Debian's package may start a system-wide HAProxy; the tests start their own.
        subprocess.run(["service", "haproxy", "stop"], capture_output=True, check=False)
        return
    log(
        f"{' '.join(missing)} not found and not root: the load-balancer tests will skip (not in CI)"
    )


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    ensure_redis()
    ensure_lb_tools()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy", "--strict", "spotgrace")
    run(BIN / "lint-imports")  # the layer contracts in pyproject.toml
    pytest = [str(BIN / "python"), "-m", "pytest", "--cov=spotgrace", "--cov-report=term", *args]
    log(" ".join(pytest))
    return subprocess.run(pytest, cwd=ROOT, check=False).returncode


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    cmd = [str(BIN / "python"), str(ROOT / "examples" / "demo.py"), *args]
    log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def cmd_bench(args: list[str]) -> int:
    ensure_venv()
    ensure_lb_tools()
    cmd = [str(BIN / "python"), str(ROOT / "bench" / "run_all.py"), *args]
    log(" ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "bench": cmd_bench}


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
