"""``spotgrace.timeline`` on the events of real shutdowns run here.

The module fixture runs real programs through real signals (clean, hook
timeout, watchdog exit, second signal, ``spotgrace run`` + child, a rolling
restart of two workers), concurrently; each test reads back what they wrote.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from spotgrace.timeline import Shutdown, read_shutdowns, render_html, render_text
from spotgrace.timeline._command import add_parser
from spotgrace.timeline._command import main as timeline_main
from tests.helpers.shutdowns import Capture, run_all

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Capture]:
    return run_all(tmp_path_factory.mktemp("timeline"))


def only(text: str) -> Shutdown:
    shutdowns, _ = read_shutdowns(text.splitlines())
    assert len(shutdowns) == 1, [s.process for s in shutdowns]
    return shutdowns[0]


def hooks(s: Shutdown) -> dict[str, str]:
    return {h.name: h.status for h in s.hooks}


def assert_rendered(s: Shutdown, deadline: str) -> None:
    """The text and the HTML both show every hook, the deadline and the verdict."""
    text = render_text([s])
    page = render_html([s])
    for h in s.hooks:
        assert f"hook {h.name}" in text
        assert f">{h.name}</text>" in page
        assert f"{h.status} · " in page
    assert f"deadline +{deadline}" in text
    assert f"deadline +{deadline[:-1]}" in page  # two decimals in the picture
    assert f"verdict: {s.verdict}" in text
    assert s.verdict.replace("'", "&#x27;") in page


def test_clean_shutdown(runs: dict[str, Capture]) -> None:
    cap = runs["clean"]
    assert cap.returncodes == [0]
    s = only(cap.events_file)
    assert hooks(s) == {"deregister": "ok", "flush_metrics": "ok", "close_db": "ok"}
    assert next(h.name for h in s.hooks) == "deregister"  # order=-10 runs first
    assert s.clean
    assert s.verdict.startswith("CLEAN: finished")
    assert s.deadline == pytest.approx(27.0, abs=0.05)  # 30 s stop timeout - 3 s margin
    assert s.kill_at == pytest.approx(30.0, abs=0.05)
    assert [b.name for b in s.bands] == ["drain", "cleanup"]  # no lame duck by default
    assert s.inflight[0][1] == 1
    assert s.inflight[-1][1] == 0
    assert_rendered(s, "27.000")


def test_clean_shutdown_from_mixed_stdout(runs: dict[str, Capture]) -> None:
    """The app's own JSON lines (no pid, ISO timestamps) among its other output."""
    cap = runs["clean"]
    shutdowns, stats = read_shutdowns(cap.output.splitlines())
    assert len(shutdowns) == 1
    s = shutdowns[0]
    assert s.pid is None
    assert s.clean
    assert hooks(s) == hooks(only(cap.events_file))
    assert stats.unrelated >= 3  # job-start, ready, job-done...
    assert stats.malformed == 0


def test_hook_timeout(runs: dict[str, Capture]) -> None:
    s = only(runs["hook_timeout"].events_file)
    assert hooks(s) == {"first_good": "ok", "hang_forever": "timed out", "last_good": "ok"}
    hung = next(h for h in s.hooks if h.name == "hang_forever")
    assert 0.4 <= hung.duration <= 5.0
    assert hung.timeout == pytest.approx(0.5)
    assert not s.clean
    assert "hook hang_forever timed out after" in s.verdict
    assert s.deadline == pytest.approx(5.4, abs=0.05)
    assert_rendered(s, "5.400")
    assert "timed out · " in render_html([s])


def test_watchdog_exit(runs: dict[str, Capture]) -> None:
    cap = runs["watchdog"]
    assert cap.returncodes == [124]
    s = only(cap.events_file)
    assert hooks(s) == {"first_good": "ok", "block_the_loop": "running"}
    assert s.exit_code == 124
    assert s.exit_why == "watchdog"
    assert s.deadline is not None
    assert s.exit_at is not None
    assert abs(s.exit_at - s.deadline) < 0.5  # it fired at its deadline
    assert "the watchdog ended the process at its deadline" in s.verdict
    assert "block_the_loop" in s.verdict
    assert "1 of 3 hooks never ran" in s.verdict
    assert_rendered(s, "2.000")
    assert "exit 124 (watchdog)" in render_html([s])


def test_second_signal(runs: dict[str, Capture]) -> None:
    cap = runs["second_signal"]
    assert cap.returncodes == [143]
    s = only(cap.events_file)
    assert hooks(s) == {"first_good": "ok", "hang_forever": "running"}
    assert s.exit_code == 143
    assert "a second signal (SIGTERM) ended the process" in s.verdict
    assert "while cleaning, exit code 143" in s.verdict
    assert "hook hang_forever was still running" in s.verdict
    assert_rendered(s, "18.000")
    assert "second signal (SIGTERM)" in render_html([s])


def test_supervisor_and_child(runs: dict[str, Capture]) -> None:
    cap = runs["supervised"]
    assert cap.returncodes == [0]
    child = only(cap.events_file)  # the child wrote the events file, with its pid
    shutdowns, stats = read_shutdowns(cap.output.splitlines())  # docker logs: both, no pid
    # The supervisor forwards the signal before it logs: either may come first.
    assert sorted(s.role for s in shutdowns) == ["app", "supervisor"], stats.summary()
    sup, app = sorted(shutdowns, key=lambda s: s.role != "supervisor")
    assert sup.child_pid == child.pid
    assert sup.process == f"spotgrace run (supervisor of pid {child.pid}; no pid in the log)"
    assert sup.exit_code == 0
    assert sup.clean
    assert sup.deadline == pytest.approx(7.2, abs=0.05)  # --stop-timeout 8, margin 0.8
    assert hooks(app) == {"deregister": "ok", "flush_metrics": "ok", "close_db": "ok"}
    assert app.clean
    # The supervisor hands its child a budget that ends at its own SIGKILL (7.2 s):
    # the child's deadline is 7.2 - 0.72, before it.
    assert not any("after spotgrace run's SIGKILL" in n for n in app.notes)
    page = render_html(shutdowns, stats)
    assert "spotgrace run (supervisor" in page
    assert "app (no pid in the log)" in page
    # 7.2 s on the supervisor's axis, less the child's notice lag (tens of ms when busy).
    assert re.search(r"spotgrace run SIGKILL \+7\.[01]\d s|spotgrace run SIGKILL \+7\.20 s", page)
    assert_rendered(app, "6.480")


def test_supervisor_kills_a_stuck_child(runs: dict[str, Capture]) -> None:
    cap = runs["supervisor_kill"]
    assert cap.returncodes == [137]
    shutdowns, stats = read_shutdowns(cap.output.splitlines())
    # The supervisor forwards the signal before it logs: either may come first.
    assert sorted(s.role for s in shutdowns) == ["app", "supervisor"], stats.summary()
    sup, app = sorted(shutdowns, key=lambda s: s.role != "supervisor")
    # The SIGKILL lands at the 1.5 s deadline, up to a second later on a busy machine.
    assert re.search(
        r"the supervisor SIGKILLed its process group at \+(1\.[5-9]|2\.\d)\d s", sup.verdict
    )
    assert sup.exit_code == 137
    assert hooks(app) == {"first_good": "ok", "block_the_loop": "running"}
    assert app.exit_code == 137
    assert 1.4 <= app.exit_at <= 3.0
    assert "SIGKILLed by spotgrace run at the supervisor's deadline" in app.verdict
    assert "before its shutdown finished" in app.verdict
    assert any(
        re.search(r"after spotgrace run's SIGKILL \(\+(1\.[5-9]|2\.\d)\d s\)", n) for n in app.notes
    )
    page = render_html(shutdowns, stats)
    assert re.search(r"spotgrace run SIGKILL \+(1\.[5-9]|2\.\d)\d s", page)
    # The child's own events file alone: its events just stop.
    alone = only(cap.events_file)
    assert "the events stop at" in alone.verdict


def test_rolling_restart(runs: dict[str, Capture]) -> None:
    cap = runs["rolling"]
    assert cap.returncodes == [0, 0]
    shutdowns, _ = read_shutdowns(cap.events_file.splitlines())
    assert len(shutdowns) == 2
    assert len({s.pid for s in shutdowns}) == 2
    assert shutdowns[0].notice_at < shutdowns[1].notice_at
    assert all(s.clean for s in shutdowns)
    page = render_html(shutdowns)
    assert page.count("<svg ") == 2
    assert "after the first)" in page
    mixed, _ = read_shutdowns(cap.output.splitlines())  # without pids: split at each notice
    assert len(mixed) == 2
    assert all(s.clean for s in mixed)


def test_every_scenario_in_one_page(runs: dict[str, Capture]) -> None:
    lines = [line for cap in runs.values() for line in cap.events_file.splitlines()]
    shutdowns, stats = read_shutdowns(lines)
    assert len(shutdowns) == 8  # rolling has two; the supervised files hold the child's
    assert stats.skipped == 0
    assert [s.clean for s in shutdowns].count(False) == 4
    assert render_html(shutdowns, stats).count("<svg ") == 8


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="spotgrace")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["timeline", *argv])
    out = io.StringIO()
    code = timeline_main(args, stdin=io.StringIO(stdin), out=out)
    return code, out.getvalue()


def test_command_writes_a_private_html_file(runs: dict[str, Capture], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(runs["clean"].events_file)
    out = tmp_path / "t.html"
    code, printed = run_cli(str(events), "--html", str(out))
    assert code == 0
    assert "verdict: CLEAN" in printed
    assert f"wrote {out}" in printed
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert "<svg " in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "t.html"]  # no temp


def test_command_exit_status(runs: dict[str, Capture], tmp_path: Path) -> None:
    code, printed = run_cli("-", "--quiet", stdin=runs["watchdog"].events_file)
    assert code == 1
    assert "NOT CLEAN" in printed
    assert run_cli("-", stdin="no events here\n")[0] == 2
    assert run_cli(str(tmp_path / "missing.jsonl"))[0] == 2


def test_simulate_html_pictures_the_rehearsal(tmp_path: Path) -> None:
    out = tmp_path / "rehearsal.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    cmd = [sys.executable, "-m", "spotgrace", "simulate", "--quiet", "--interrupt-after", "1"]
    cmd += ["--stop-timeout", "10", "--html", str(out), "--", "python", "examples/worker_app.py"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote the timeline picture to {out}" in done.stdout
    page = out.read_text()
    for name in ("ack_finished_jobs", "close_queue_connection"):
        assert f">{name}</text>" in page
    assert "deadline +9.00 s" in page
    assert "platform SIGKILL +10.00 s" in page
    assert re.search(r"exit 0 \+0\.\d\d s|exit 0 \+1\.\d\d s", page)  # simulate saw the exit
    assert "CLEAN: finished" in page


def test_simulate_html_when_the_rehearsal_ends_in_sigkill(tmp_path: Path) -> None:
    """The app's own stop timeout (30 s) is longer than the platform's (2 s): SIGKILL."""
    out = tmp_path / "killed.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTGRACE_", "ECS_"))}
    env["SPOTGRACE_STOP_TIMEOUT"] = "30"
    app = ["python", "tests/programs/stuck_hook.py", "block-loop"]
    cmd = [sys.executable, "-m", "spotgrace", "simulate", "--quiet", "--interrupt-after", "1"]
    cmd += ["--stop-timeout", "2", "--html", str(out), "--", *app]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr  # NOT CLEAN
    page = out.read_text()
    assert "exit 137 +" in page
    assert "SIGKILL by spotgrace simulate at the stop timeout" in page
    assert ">block_the_loop</text>" in page
    assert "running · " in page
    assert "NOT CLEAN" in page
