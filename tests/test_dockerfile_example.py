"""``Dockerfile.example`` without Docker: its runtime contract, for real.

No container engine runs where the suite runs, so the image is never built
here. What can be checked is what the image would do: the runtime stage's
instructions are read from the file, and its ENTRYPOINT + CMD run with its
ENV as PID 1 of a fresh PID namespace (as the container's PID 1 would be),
from the repository root standing in for ``/app``, with this virtual
environment standing in for ``/opt/venv``. The HEALTHCHECK's own command must
pass, and SIGTERM (the STOPSIGNAL) must end it cleanly with exit code 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.supervised import PYTHON, ROOT, WAIT, Supervised

DOCKERFILE = ROOT / "Dockerfile.example"


def runtime_stage() -> dict[str, list[str]]:
    """Instruction -> arguments (text) of the last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    last_from = max(i for i, x in enumerate(lines) if x.startswith("FROM "))
    stage: dict[str, list[str]] = {}
    for line in lines[last_from:]:
        word, _, rest = line.partition(" ")
        stage.setdefault(word, []).append(rest.strip())
    return stage


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"not exec form: {text}"
    return [str(v) for v in value]


def image_env(stage: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in stage.get("ENV", []):
        for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line):
            env[key] = value.strip('"')
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def container() -> Iterator[list[Supervised]]:
    runs: list[Supervised] = []
    yield runs
    for run in runs:
        run.kill()


def test_the_image_runs_spotgrace_as_pid1_non_root_with_sigterm() -> None:
    stage = runtime_stage()
    assert exec_form(stage["ENTRYPOINT"][0]) == ["spotgrace", "run", "--"]
    assert stage["STOPSIGNAL"] == ["SIGTERM"]
    assert stage["USER"][0].split(":")[0] not in ("root", "0")
    assert stage["HEALTHCHECK"][0].split(" CMD ", 1)[1].startswith("[")  # exec form, no shell


def test_the_entrypoint_and_cmd_serve_pass_the_healthcheck_and_stop_cleanly(
    container: list[Supervised],
) -> None:
    stage = runtime_stage()
    entrypoint = exec_form(stage["ENTRYPOINT"][0])
    cmd = exec_form(stage["CMD"][0])
    healthcheck = exec_form(stage["HEALTHCHECK"][0].split(" CMD ", 1)[1])
    venv_bin = str(Path(PYTHON).parent)
    env = {
        **image_env(stage),
        "PORT": str(free_port()),
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",  # /opt/venv/bin first, as in the image
    }
    # Supervised runs `python -m spotgrace run ARGS`; the image runs the
    # `spotgrace` script with the same arguments: ENTRYPOINT[2:] + CMD.
    run = Supervised([*entrypoint[2:], *cmd], pid1=True, env=env)
    container.append(run)
    assert run.wait_event("child.started")["pid1"] is True
    end = time.monotonic() + WAIT
    while True:
        check = subprocess.run(healthcheck, env={**os.environ, **env}, capture_output=True)
        if check.returncode == 0:
            break
        assert time.monotonic() < end, f"HEALTHCHECK never passed: {check.stderr!r}"
        assert run.proc.poll() is None, run.transcript()
        time.sleep(0.2)
    run.send(signal.SIGTERM)
    assert run.wait() == 0, run.transcript()
    finished = run.wait_event("run.exiting")
    assert (finished["exit_code"], finished["child_exit_code"]) == (0, 0)
