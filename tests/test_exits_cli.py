"""Errors users can act on: missing extras, the command line, doctor outside a container."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import spotgrace
from spotgrace._cli import main as cli_main
from spotgrace._cli._doctor import run_checks

ROOT = Path(__file__).resolve().parent.parent


def _without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``module`` cannot be imported."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("missing", "code", "extra"),
    [
        ("aiohttp", "import spotgrace.aiohttp", "spotgrace[aiohttp]"),
        ("aiohttp", "import spotgrace.testing", "spotgrace[testing]"),
        ("httpx", "import spotgrace.ecs", "spotgrace[watch]"),
        ("uvicorn", "import spotgrace.asgi as a; a.serve(None)", "spotgrace[asgi]"),
    ],
)
def test_a_missing_extra_is_one_clear_import_error_naming_it(
    missing: str, code: str, extra: str
) -> None:
    proc = _without(missing, code)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("spotgrace._core._errors.MissingExtraError: "), proc.stderr
    assert f'pip install "{extra}"' in last
    assert "asyncio" not in proc.stderr  # asgi.serve(): before any event loop ran


def test_missing_extra_error_is_an_import_error() -> None:
    assert issubclass(spotgrace._core._errors.MissingExtraError, ImportError)


def test_simulate_on_a_core_install_says_what_to_install_in_one_line() -> None:
    code = "from spotgrace._cli import main; sys.exit(main(['simulate', '--', 'true']))"
    proc = _without("aiohttp", code)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "spotgrace simulate: spotgrace.testing needs aiohttp, which is not installed: "
        'pip install "spotgrace[testing]"'
    ]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"spotgrace {spotgrace.__version__}"


@pytest.mark.parametrize("command", ["run", "doctor", "simulate"])
def test_an_unknown_option_shows_the_commands_own_usage(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main([command, "--bogus", "--", "true"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: spotgrace {command}"), err
    assert f"spotgrace {command}: error: unrecognized arguments: --bogus" in err


def test_a_bad_flag_value_blames_the_flag_not_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["run", "--stop-timeout", "-5", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert "--stop-timeout must be more than 0" in err
    assert "SPOTGRACE_STOP_TIMEOUT" not in err


def test_a_cross_field_error_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTGRACE_MARGIN", "40")
    assert cli_main(["run", "--", "true"]) == 2
    assert "margin (40 s, from SPOTGRACE_MARGIN) must be less than" in capsys.readouterr().err


def _program_pid1(tmp_path: Path) -> Path:
    one = tmp_path / "proc" / "1"
    one.mkdir(parents=True)
    (one / "cmdline").write_bytes(b"/process_api\0--init\0")
    (one / "status").write_text("Name:\tx\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n")
    (one / "cgroup").write_text("0::/\n")
    (tmp_path / "root").mkdir()
    return tmp_path


def test_doctor_outside_a_container_does_not_judge_the_hosts_pid1(tmp_path: Path) -> None:
    base = _program_pid1(tmp_path)
    checks = {c.name: c for c in run_checks(environ={}, proc=base / "proc", root=base / "root")}
    assert checks["pid1"].status == "info", checks["pid1"]
    assert "not a container" in checks["pid1"].message
    assert checks["where"].message.startswith("Running on a host or VM")


def test_doctor_inside_a_container_judges_pid1(tmp_path: Path) -> None:
    base = _program_pid1(tmp_path)
    (base / "root" / ".dockerenv").touch()
    checks = {c.name: c for c in run_checks(environ={}, proc=base / "proc", root=base / "root")}
    assert checks["pid1"].status == "problem"
    assert checks["where"].message == "Running in a container (/.dockerenv)."


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "abc"])
def test_doctor_never_says_ok_for_a_bad_stop_timeout(tmp_path: Path, value: str) -> None:
    base = _program_pid1(tmp_path)
    env = {"SPOTGRACE_STOP_TIMEOUT": value}
    checks = {c.name: c for c in run_checks(environ=env, proc=base / "proc", root=base / "root")}
    assert checks["stop_timeout"].status == "problem", checks["stop_timeout"]
    assert checks["config"].status == "problem"


def test_doctor_suggests_the_variable_meant(tmp_path: Path) -> None:
    base = _program_pid1(tmp_path)
    env = {"SPOTGRACE_STOPTIMEOUT": "120"}
    checks = {c.name: c for c in run_checks(environ=env, proc=base / "proc", root=base / "root")}
    assert (
        "SPOTGRACE_STOPTIMEOUT (did you mean SPOTGRACE_STOP_TIMEOUT?)"
        in checks["variables"].message
    )
