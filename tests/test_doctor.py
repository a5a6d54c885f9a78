"""``spotgrace doctor``: end to end in real PID namespaces, and check by check.

The end-to-end tests make the situation doctor must recognise for real: PID 1
is ``spotgrace run``, a shell, or a Python program with or without a SIGTERM
handler, in a fresh PID namespace, with a local fake of the ECS endpoints.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spotgrace._cli import _doctor
from spotgrace._cli._doctor import Check, run_checks
from spotgrace._supervisor._probes import signal_mask
from tests.helpers.fake_ecs import FakeECS, fake_ecs
from tests.helpers.supervised import PYTHON, ROOT, WAIT, require_pid_namespace

DOCTOR = [PYTHON, "-m", "spotgrace", "doctor", "--json"]


@pytest.fixture
def ecs() -> Iterator[FakeECS]:
    with fake_ecs() as fake:
        yield fake


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v4/gone"


def doctor_under(pid1: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run ``pid1`` as PID 1 of a new PID namespace; it runs doctor; (exit code, report)."""
    require_pid_namespace()
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", *pid1],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        timeout=WAIT,
        check=False,
    )
    start = done.stdout.index("{")
    report, end = json.JSONDecoder().raw_decode(done.stdout[start:])
    tail = done.stdout[start + end :]
    code = (
        int(tail.split("doctor-exit=")[1].split()[0]) if "doctor-exit=" in tail else done.returncode
    )
    return code, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


# ----------------------------------------------------------------------- end to end


def test_a_good_setup_passes(ecs: FakeECS) -> None:
    env = {
        "SPOTGRACE_STOP_TIMEOUT": "120",
        "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
        "ECS_CONTAINER_METADATA_URI_V4": ecs.metadata_uri,
        "ECS_AGENT_URI": ecs.agent_uri,
    }
    code, report = doctor_under([PYTHON, "-m", "spotgrace", "run", "--", *DOCTOR], env)
    checks = by_name(report)
    assert {name: c["status"] for name, c in checks.items()} == {
        "pid1": "ok",
        "where": "info",
        "config": "ok",
        "stop_timeout": "ok",
        "variables": "ok",
        "ecs_metadata": "ok",
        "ecs_agent": "ok",
    }
    assert checks["pid1"]["details"]["kind"] == "spotgrace"
    assert checks["ecs_metadata"]["details"]["LaunchType"] == "FARGATE"
    assert report["ok"] is True
    assert code == 0


def test_a_bad_setup_fails_and_names_each_problem() -> None:
    env = {
        "SPOTGRACE_STOP_TIMEOUT": "300",
        "SPOTGRACE_MARGIN": "soon",
        "SPOTGRACE_STOPTIMEOUT": "120",
        "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
        "ECS_CONTAINER_METADATA_URI_V4": closed_port_url(),
    }
    shell = ["sh", "-c", " ".join(DOCTOR) + '; echo "doctor-exit=$?"']
    code, report = doctor_under(shell, env)
    checks = by_name(report)
    assert code == 1
    assert report["ok"] is False
    assert checks["pid1"]["status"] == "problem"
    assert "shell" in checks["pid1"]["message"]
    assert checks["config"]["status"] == "problem"
    assert "SPOTGRACE_MARGIN" in checks["config"]["message"]
    assert checks["stop_timeout"]["status"] == "problem"
    assert "120" in checks["stop_timeout"]["message"]
    assert checks["variables"]["status"] == "warning"
    assert "SPOTGRACE_STOPTIMEOUT" in checks["variables"]["message"]
    assert checks["ecs_metadata"]["status"] == "problem"
    assert "does not answer" in checks["ecs_metadata"]["message"]
    assert checks["ecs_agent"]["status"] == "warning"  # on ECS without the agent URI


PYTHON_PID1 = "import signal, subprocess, sys\n{setup}\nsys.exit(subprocess.call(sys.argv[1:]))"


@pytest.mark.parametrize(
    ("setup", "status", "words"),
    [
        ("", "problem", "has no SIGTERM handler"),
        ("signal.signal(signal.SIGTERM, signal.SIG_IGN)", "problem", "ignores SIGTERM"),
        ("signal.signal(signal.SIGTERM, lambda *a: None)", "ok", "handles SIGTERM"),
    ],
)
def test_a_program_as_pid1_is_judged_by_its_sigterm_handler(
    setup: str, status: str, words: str
) -> None:
    pid1 = [PYTHON, "-c", PYTHON_PID1.format(setup=setup), *DOCTOR]
    _, report = doctor_under(pid1, {"SPOTGRACE_STOP_TIMEOUT": "30"})
    check = by_name(report)["pid1"]
    assert check["status"] == status
    assert words in check["message"]


# ----------------------------------------------------------------------- check by check


def fake_proc(tmp_path: Path, argv: list[str], caught: str = "0000000000000000") -> Path:
    one = tmp_path / "1"
    one.mkdir()
    (one / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (one / "status").write_text(
        f"Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t{caught}\n"
    )
    (one / "cgroup").write_text("0::/docker/0123abcd\n")  # inside a container
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "status", "kind"),
    [
        (["/sbin/docker-init", "--", "python", "app.py"], "ok", "init"),
        (["tini", "--", "python", "app.py"], "ok", "init"),
        (["/usr/local/bin/spotgrace", "run", "--", "python", "app.py"], "ok", "spotgrace"),
        (["/bin/bash", "/entrypoint.sh"], "problem", "shell"),
        (["/lib/systemd/systemd", "--system"], "info", "host"),
        (["python", "app.py"], "problem", "program"),
    ],
)
def test_pid1_kinds(tmp_path: Path, argv: list[str], status: str, kind: str) -> None:
    check = run_checks(environ={}, proc=fake_proc(tmp_path, argv))[0]
    assert (check.status, check.details["kind"]) == (status, kind)


def test_an_unreadable_proc_is_reported_not_fatal(tmp_path: Path) -> None:
    check = run_checks(environ={}, proc=tmp_path)[0]
    assert check.status == "info"
    assert "Cannot read PID 1" in check.message


def test_signal_masks_are_read_bit_n_minus_1_for_signal_n() -> None:
    assert signal_mask("0000000000004002") == {signal.SIGINT, signal.SIGTERM}
    assert signal_mask("0") == frozenset()


def checks(env: dict[str, str], tmp_path: Path) -> dict[str, Check]:
    proc = fake_proc(tmp_path, ["tini", "--", "app"])
    return {c.name: c for c in run_checks(environ=env, proc=proc, timeout=5)}


def test_a_stop_timeout_over_120_is_a_warning_off_fargate(tmp_path: Path) -> None:
    check = checks({"SPOTGRACE_STOP_TIMEOUT": "300"}, tmp_path)["stop_timeout"]
    assert check.status == "warning"


def test_fargate_is_recognised_from_task_metadata(tmp_path: Path, ecs: FakeECS) -> None:
    env = {"SPOTGRACE_STOP_TIMEOUT": "300", "ECS_CONTAINER_METADATA_URI_V4": ecs.metadata_uri}
    assert checks(env, tmp_path)["stop_timeout"].status == "problem"


def test_an_unset_stop_timeout_is_a_warning(tmp_path: Path) -> None:
    check = checks({}, tmp_path)["stop_timeout"]
    assert check.status == "warning"
    assert "not set" in check.message


def test_a_stop_under_way_is_reported(tmp_path: Path, ecs: FakeECS) -> None:
    ecs.task["DesiredStatus"] = "STOPPED"
    check = checks({"ECS_CONTAINER_METADATA_URI_V4": ecs.metadata_uri}, tmp_path)["ecs_metadata"]
    assert check.status == "warning"
    assert "stop is under way" in check.message


def test_an_agent_error_body_is_a_warning(tmp_path: Path, ecs: FakeECS) -> None:
    env = {"ECS_AGENT_URI": ecs.agent_uri + "/wrong"}
    check = checks(env, tmp_path)["ecs_agent"]
    assert check.status == "warning"
    assert "HTTP 404" in check.message
    assert "NotFound" in check.message


def test_a_host_outside_link_local_is_not_contacted(tmp_path: Path) -> None:
    env = {"ECS_CONTAINER_METADATA_URI_V4": "http://example.com/v4/abc"}
    check = checks(env, tmp_path)["ecs_metadata"]
    assert check.status == "problem"
    assert "not contacted" in check.message


@pytest.mark.parametrize(
    ("statuses", "strict", "expected"),
    [
        (["ok", "info"], False, 0),
        (["ok", "warning"], False, 0),
        (["ok", "warning"], True, 1),
        (["ok", "problem"], False, 1),
    ],
)
def test_exit_code_policy(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    statuses: list[str],
    strict: bool,
    expected: int,
) -> None:
    fixed = [Check(f"c{i}", s, f"message {i}") for i, s in enumerate(statuses)]  # type: ignore[arg-type]
    monkeypatch.setattr(_doctor, "run_checks", lambda **kw: fixed)
    args = argparse.Namespace(json=False, strict=strict, timeout=1.0)
    assert _doctor.main(args) == expected
    out = capsys.readouterr().out
    assert "message 1" in out


def test_the_documented_task_definition_passes_doctor(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "ecs-deployment.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    task = next(json.loads(b) for b in blocks if "containerDefinitions" in b)
    container = task["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert float(env["SPOTGRACE_STOP_TIMEOUT"]) == container["stopTimeout"] == 120
    found = checks({**env, "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"}, tmp_path)
    assert found["stop_timeout"].status == "ok"
    assert found["config"].status == "ok"
    assert found["variables"].status == "ok"
