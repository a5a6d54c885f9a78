"""spotgrace.celery without a worker: derived settings, install() validation, health check."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

import spotgrace
import spotgrace.celery
from spotgrace.celery import Budget, celery_settings, check_health
from spotgrace.celery.__main__ import main as health_main
from spotgrace.celery._health import write_beat
from spotgrace.celery._tree import descendants


@pytest.mark.parametrize(
    ("stop_timeout", "margin", "drain"),
    [(30.0, 3.0, 21.6), (120.0, 5.0, 92.0), (6.0, 0.6, 4.32)],
)
def test_budget_for_common_stop_timeouts(stop_timeout: float, margin: float, drain: float) -> None:
    app = Celery("unit")
    installed = spotgrace.celery.install(app, stop_timeout=stop_timeout, health_file=False)
    assert installed.budget.stop_timeout == stop_timeout
    assert installed.budget.margin == pytest.approx(margin)
    assert installed.budget.drain == drain
    assert app.conf.worker_soft_shutdown_timeout == drain
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_enable_soft_shutdown_on_idle is False


def test_drain_timeout_is_capped_by_the_budget() -> None:
    budget = Budget.from_options(stop_timeout=30, margin=3, drain_timeout=100)
    assert budget.drain == 27
    assert celery_settings(budget)["worker_soft_shutdown_timeout"] == 27


def test_install_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTGRACE_STOP_TIMEOUT", "120")
    monkeypatch.setenv("SPOTGRACE_DRAIN_TIMEOUT", "60")
    installed = spotgrace.celery.install(Celery("unit"), health_file=False)
    assert installed.budget.drain == 60
    assert installed.health_file is None


def test_install_with_configure_false_leaves_celery_settings_alone() -> None:
    app = Celery("unit")
    installed = spotgrace.celery.install(app, configure=False, health_file=False)
    assert installed.settings["task_acks_late"] is True
    assert app.conf.task_acks_late is False
    assert app.conf.worker_prefetch_multiplier == 4


def test_install_adds_one_worker_bootstep() -> None:
    app = Celery("unit")
    spotgrace.celery.install(app, health_file=False)
    steps = [s for s in app.steps["worker"] if getattr(s, "label", None) == "spotgrace"]
    assert len(steps) == 1


def test_install_default_health_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPOTGRACE_CELERY_HEALTH_FILE", str(tmp_path / "h.json"))
    assert spotgrace.celery.install(Celery("unit")).health_file == tmp_path / "h.json"


def test_bad_stop_timeout_in_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTGRACE_STOP_TIMEOUT", "soon")
    with pytest.raises(spotgrace.ConfigError, match="SPOTGRACE_STOP_TIMEOUT"):
        spotgrace.celery.install(Celery("unit"))


@pytest.mark.parametrize("value", ["signal", "return"])
def test_exit_code_must_be_a_number(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SPOTGRACE_EXIT_CODE", value)
    with pytest.raises(
        spotgrace.ConfigError, match=r"must be a number or .auto. for a Celery worker"
    ):
        spotgrace.celery.install(Celery("unit"))


def test_install_rejects_what_is_not_an_app() -> None:
    with pytest.raises(TypeError, match=r"celery\.Celery"):
        spotgrace.celery.install("proj")  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [0, -1, True, "5"])
def test_install_rejects_a_bad_health_interval(interval: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        spotgrace.celery.install(Celery("unit"), health_interval=interval)  # type: ignore[arg-type]


def beat(path: Path, **record: object) -> None:
    write_beat(path, {"pid": os.getpid(), "state": "running", "ready": True, **record})


def test_heartbeat_file_is_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    beat(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]  # no temp file left


def test_health_ok_when_fresh_and_alive(tmp_path: Path) -> None:
    beat(tmp_path / "h.json")
    assert check_health(tmp_path / "h.json", max_age=30).ok


def test_health_fails_without_a_file(tmp_path: Path) -> None:
    result = check_health(tmp_path / "missing.json", max_age=30)
    assert not result.ok
    assert "no readable heartbeat" in result.reason


def test_health_fails_when_stale(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"pid": os.getpid(), "ts": time.time() - 100}))
    result = check_health(path, max_age=30)
    assert not result.ok
    assert "old" in result.reason


def test_health_fails_when_the_process_is_gone(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    beat(tmp_path / "h.json", pid=int(done.stdout))
    result = check_health(tmp_path / "h.json", max_age=30)
    assert not result.ok
    assert "gone" in result.reason


def test_readiness_fails_once_draining(tmp_path: Path) -> None:
    beat(tmp_path / "h.json", state="draining", ready=False)
    assert check_health(tmp_path / "h.json", max_age=30).ok  # still alive: liveness passes
    result = check_health(tmp_path / "h.json", max_age=30, ready=True)
    assert not result.ok
    assert "draining" in result.reason


def test_health_rejects_a_bad_max_age(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_age"):
        check_health(tmp_path / "h.json", max_age=0)


def test_health_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.json"
    assert health_main(["health", "--file", str(path)]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: ")
    beat(path)
    assert health_main(["health", "--file", str(path), "--max-age", "10"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_descendants_lists_a_process_tree() -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not descendants(parent.pid):
            time.sleep(0.05)
        kids = descendants(parent.pid)
        assert len(kids) == 1
        assert parent.pid in [int(p) for p in descendants(os.getpid())]
    finally:
        for pid in descendants(parent.pid):
            os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_public_names_sorted_complete_and_documented() -> None:
    mod = spotgrace.celery
    assert mod.__all__ == sorted(mod.__all__)
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("spotgrace.celery")
    }
    assert public <= set(mod.__all__)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if callable(obj):
            assert obj.__doc__, f"spotgrace.celery.{name} has no docstring"


def test_import_spotgrace_does_not_import_celery() -> None:
    code = "import sys, spotgrace; print(sorted(m for m in sys.modules if m.startswith('celery')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
