"""``spotgrace run``: real processes, real signals, and PID 1 in a real PID namespace.

The PID 1 tests start ``unshare --pid --fork --mount-proc python -m spotgrace
run ...``, so the supervisor is PID 1 of a fresh namespace as in a container;
signals are sent to it from outside, as ``docker stop`` and ECS do. Bounds on
time are generous: only "not before the deadline" is exact, because it is a
property of the supervisor's own clock.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spotgrace._cli import main as cli_main
from spotgrace._supervisor._reaper import Exit
from spotgrace.testing import FakeEndpoints
from tests.helpers.supervised import PROGRAMS, PYTHON, WAIT, Supervised

FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


@pytest.fixture
def started() -> Iterator[list[Supervised]]:
    """Supervisors started by a test; whatever is left is killed afterwards."""
    runs: list[Supervised] = []
    yield runs
    for run in runs:
        run.kill()


def start(started: list[Supervised], args: list[str], *, pid1: bool, **kw: object) -> Supervised:
    run = Supervised(args, pid1=pid1, **kw)  # type: ignore[arg-type]
    started.append(run)
    return run


def program(name: str, *args: str) -> list[str]:
    path = PROGRAMS / name
    return ["--", *([PYTHON] if name.endswith(".py") else []), str(path), *args]


# ----------------------------------------------------------------------- as PID 1


def test_as_pid1_a_shell_trapping_sigterm_exits_with_its_own_code(
    started: list[Supervised],
) -> None:
    run = start(started, program("trap_term.sh"), pid1=True)
    assert run.wait_event("child.started")["pid1"] is True
    run.wait_line("ready")
    run.send(signal.SIGTERM)
    assert run.wait() == 7, run.transcript()
    assert "trapped SIGTERM" in run.out
    names = [e["event"] for e in run.events()]
    assert "shutdown.deadline_exceeded" not in names
    finished = run.wait_event("shutdown.finished")
    assert finished["killed"] is False
    assert finished["source"] == "signal"


def test_as_pid1_a_program_ignoring_sigterm_is_sigkilled_at_the_deadline(
    started: list[Supervised],
) -> None:
    budget = 2.0  # stop_timeout 3 - margin 1
    run = start(
        started, ["--stop-timeout", "3", "--margin", "1", *program("ignore_term.py")], pid1=True
    )
    run.wait_line("ready")
    sent = time.monotonic()
    run.send(signal.SIGTERM)
    run.wait_event("signal.forwarded")
    run.send(signal.SIGTERM)  # a second SIGTERM is forwarded but does not move the deadline
    code = run.wait(timeout=30)
    took = time.monotonic() - sent
    assert code == 128 + signal.SIGKILL, run.transcript()
    events = run.events()
    kill = next(e for e in events if e["event"] == "shutdown.deadline_exceeded")
    assert kill["action"] == "SIGKILL"
    assert kill["elapsed"] >= budget  # never early, by the supervisor's own clock
    assert kill["elapsed"] < budget + 5  # generous: a noisy shared machine
    assert budget - 0.1 <= took < budget + 10
    assert [e["event"] for e in events].count("shutdown.started") == 1
    assert [e["signal"] for e in events if e["event"] == "signal.forwarded"] == ["SIGTERM"] * 2
    exited = next(e for e in events if e["event"] == "child.exited")
    assert exited["signal"] == "SIGKILL"
    assert run.wait_event("run.exiting")["exit_code"] == 137


def test_as_pid1_orphaned_grandchildren_are_all_reaped(started: list[Supervised]) -> None:
    orphans = 20
    run = start(started, program("orphans.py", str(orphans)), pid1=True)
    assert run.wait() == 0, run.transcript()
    assert f"left {orphans} orphans to pid 1" in run.out
    assert f"zombies=0 alive=0 orphans={orphans}" in run.out, run.transcript()
    assert run.wait_event("run.exiting")["orphans_reaped"] >= orphans


# ----------------------------------------------------------------------- forwarding


@pytest.mark.parametrize("name", FORWARDED)
def test_each_listed_signal_is_forwarded_to_the_child(started: list[Supervised], name: str) -> None:
    run = start(started, program("record_signals.py", "child"), pid1=True)
    run.wait_line("child ready")
    run.send(signal.Signals[name])
    run.wait_line(f"child got {name}")
    if name != "SIGTERM":
        run.send(signal.SIGTERM)
    assert run.wait() == 0, run.transcript()
    forwarded = [e for e in run.events() if e["event"] == "signal.forwarded"]
    assert forwarded[0]["signal"] == name
    assert forwarded[0]["to"] == "child"


def test_with_group_signals_reach_the_whole_process_group(started: list[Supervised]) -> None:
    run = start(
        started, ["--group", *program("record_signals.py", "child", "--with-grandchild")], pid1=True
    )
    run.wait_line("child ready")
    run.wait_line("grandchild ready")
    run.send(signal.SIGUSR1)
    run.wait_line("child got SIGUSR1")
    run.wait_line("grandchild got SIGUSR1")
    run.send(signal.SIGTERM)
    assert run.wait() == 0, run.transcript()
    assert run.wait_event("signal.forwarded")["to"] == "group"


def test_without_group_signals_reach_only_the_child(started: list[Supervised]) -> None:
    run = start(started, program("record_signals.py", "child", "--with-grandchild"), pid1=True)
    run.wait_line("child ready")
    run.wait_line("grandchild ready")
    run.send(signal.SIGUSR1)
    run.wait_line("child got SIGUSR1")
    run.send(signal.SIGTERM)
    assert run.wait() == 0, run.transcript()
    # The child stops the grandchild with SIGTERM; its summary lists all it ever got.
    assert "grandchild exits; received: SIGTERM" in run.out, run.transcript()


# ----------------------------------------------------------------------- not PID 1


def test_as_subreaper_orphaned_grandchildren_are_reaped(started: list[Supervised]) -> None:
    run = start(started, program("orphans.py", "10"), pid1=False)
    assert run.wait() == 0, run.transcript()
    assert run.wait_event("child.started")["subreaper"] is True
    assert "zombies=0 alive=0 orphans=10" in run.out, run.transcript()


def test_the_deadline_sigkill_reaches_the_whole_group(started: list[Supervised]) -> None:
    run = start(
        started,
        ["--stop-timeout", "2", "--margin", "1", *program("ignore_term.py", "--with-grandchild")],
        pid1=False,
    )
    grandchild = int(run.wait_line("grandchild=").split("=")[1])
    run.wait_line("ready")
    run.send(signal.SIGTERM)
    assert run.wait(timeout=30) == 137, run.transcript()
    # Killed, and reaped by the supervisor (its subreaper) before it exited.
    assert not Path(f"/proc/{grandchild}").exists()
    assert run.wait_event("run.exiting")["orphans_reaped"] >= 1


# ----------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("script", "options", "expected"),
    [
        ("exit 0", [], 0),
        ("exit 3", [], 3),
        ("exit 255", [], 255),
        ("kill -USR1 $$", [], 128 + signal.SIGUSR1),
        ("kill -TERM $$", [], 143),
        ("kill -TERM $$", ["-e", "143"], 0),
        ("exit 3", ["-e", "3", "-e", "143"], 0),
        ("exit 4", ["-e", "3"], 4),
    ],
)
def test_exit_code_is_the_childs(
    started: list[Supervised], script: str, options: list[str], expected: int
) -> None:
    run = start(started, [*options, "--", "sh", "-c", script], pid1=False)
    assert run.wait() == expected, run.transcript()


def test_exit_code_propagates_through_pid1(started: list[Supervised]) -> None:
    run = start(started, ["--", "sh", "-c", "exit 42"], pid1=True)
    assert run.wait() == 42, run.transcript()


def test_a_missing_command_exits_127(started: list[Supervised]) -> None:
    run = start(started, ["--", "/nonexistent/spotgrace-test-command"], pid1=False)
    assert run.wait() == 127
    assert run.wait_event("child.spawn_failed")["exit_code"] == 127


def test_a_command_that_cannot_run_exits_126(started: list[Supervised], tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    run = start(started, ["--", str(script)], pid1=False)
    assert run.wait() == 126


def test_no_command_is_a_usage_error(started: list[Supervised]) -> None:
    run = start(started, ["--"], pid1=False)
    assert run.wait() == 2
    assert any("no command given" in line for line in run.err)


def test_a_bad_environment_value_is_an_error_at_start(started: list[Supervised]) -> None:
    run = start(started, ["--", "true"], pid1=False, env={"SPOTGRACE_STOP_TIMEOUT": "soon"})
    assert run.wait() == 2
    assert any("SPOTGRACE_STOP_TIMEOUT" in line for line in run.err), run.transcript()
    assert run.events() == []  # nothing was started


def test_stop_timeout_comes_from_the_environment(started: list[Supervised]) -> None:
    run = start(started, ["--", "true"], pid1=False, env={"SPOTGRACE_STOP_TIMEOUT": "120"})
    assert run.wait() == 0
    started_event = run.wait_event("child.started")
    assert started_event["stop_timeout"] == 120
    assert started_event["margin"] == 5  # the core's default margin for 120 s


def test_a_bad_watch_spec_is_an_error_at_start(started: list[Supervised]) -> None:
    run = start(started, ["--watch", "gcp", "--", "true"], pid1=False)
    assert run.wait() == 2
    assert any("watch" in line and "gcp" in line for line in run.err), run.transcript()


def test_python_dash_m_and_the_console_script_agree() -> None:
    script = Path(sys.executable).parent / "spotgrace"
    if not script.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs the package: its console script must be there")
        pytest.skip("the console script is not installed next to this Python")
    done = os.spawnv(os.P_WAIT, str(script), [str(script), "run", "--", "sh", "-c", "exit 5"])
    assert done == 5


# ----------------------------------------------------------------------- notices


@pytest.mark.parametrize(
    ("stop_signal", "env"), [("SIGTERM", {}), ("SIGINT", {"SPOTGRACE_SIGNALS": "SIGINT"})]
)
def test_a_notice_signals_the_child_and_the_platform_signal_is_not_sent_twice(
    started: list[Supervised], tmp_path: Path, stop_signal: str, env: dict[str, str]
) -> None:
    sig = signal.Signals[stop_signal]
    trigger = tmp_path / "notice"
    child = program("record_signals.py", "child", "--exit-on", "SIGUSR1")
    run = start(
        started,
        [str(trigger), "none", *child],
        pid1=False,
        driver=PROGRAMS / "notify_driver.py",
        env=env,
    )
    run.wait_line("child ready")
    trigger.touch()
    run.wait_line(f"child got {stop_signal}")
    begun = run.wait_event("shutdown.started")
    assert (begun["source"], begun["reason"]) == ("watch", "spot interruption notice")
    assert begun["deadline_in"] == 29  # stop_timeout 30 - margin 1
    run.send(sig)  # the platform's own stop signal, after the notice
    run.wait_event("signal.absorbed")
    run.send(sig)  # a second one is the user escalating: passed on
    run.wait_lines(f"child got {stop_signal}", 2)
    run.send(signal.SIGUSR1)
    assert run.wait() == 0, run.transcript()
    steps = [(e["event"], e["signal"]) for e in run.events() if e["event"].startswith("signal.")]
    assert steps == [
        ("signal.forwarded", stop_signal),
        ("signal.absorbed", stop_signal),
        ("signal.forwarded", stop_signal),
        ("signal.forwarded", "SIGUSR1"),
    ]


def test_a_notice_with_a_termination_time_brings_the_deadline_forward(
    started: list[Supervised], tmp_path: Path
) -> None:
    trigger = tmp_path / "notice"
    run = start(
        started,
        [str(trigger), "3", *program("ignore_term.py")],
        pid1=False,
        driver=PROGRAMS / "notify_driver.py",
    )
    run.wait_line("ready")
    trigger.touch()
    assert run.wait(timeout=30) == 137, run.transcript()
    begun = run.wait_event("shutdown.started")
    assert begun["deadline_in"] == 2  # within 3 - margin 1, not stop_timeout 30 - 1
    assert run.wait_event("shutdown.deadline_exceeded")["elapsed"] >= 2


# ----------------------------------------------------------------------- terminal


def test_an_interactive_child_gets_the_terminal_foreground() -> None:
    """As under ``docker run -it``: the supervisor owns a terminal, the child must read it."""
    probe = "import os; print('fg' if os.tcgetpgrp(0) == os.getpgrp() else 'bg', flush=True)"
    leader, follower = os.openpty()
    # setsid --ctty: a new session whose controlling terminal is stdin (the pty).
    cmd = ["setsid", "--ctty", PYTHON, "-m", "spotgrace", "run", "--", PYTHON, "-c", probe]
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    try:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not chunk:
                break
            output += chunk
        code = proc.wait(WAIT)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, output
    assert "fg" in output.decode(errors="replace").splitlines(), output


# ----------------------------------------------------------------------- in-process units


@pytest.mark.parametrize(
    ("status", "code", "name"),
    [
        (0, 0, None),
        (3 << 8, 3, None),
        (signal.SIGKILL, 137, "SIGKILL"),
        (signal.SIGTERM, 143, "SIGTERM"),
    ],
)
def test_wait_statuses_decode_to_shell_exit_codes(status: int, code: int, name: str | None) -> None:
    ended = Exit.from_status(42, status)
    assert ended.shell_code == code
    assert ended.signal_name == name


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--"], "no command given"),
        (["run", "--watch", "nowhere", "--", "true"], "--watch: unknown source"),
        (["run", "--stop-timeout", "5", "--margin", "9", "--", "true"], "margin"),
    ],
)
def test_bad_invocations_exit_2_before_starting_anything(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert cli_main(argv) == 2
    assert words in capsys.readouterr().err


def test_map_to_zero_rejects_a_code_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["run", "-e", "256", "--", "true"])
    assert exc.value.code == 2
    assert "0-255" in capsys.readouterr().err


# ----------------------------------------------------------------------- early warning


def test_as_pid1_a_task_metadata_notice_sigterms_the_child_before_the_platform(
    started: list[Supervised],
) -> None:
    with FakeEndpoints() as fake:
        child = program("record_signals.py", "child", "--exit-on", "SIGUSR1")
        run = start(
            started,
            ["--watch", "ecs", "--watch-interval", "0.2", *child],
            pid1=True,
            env=fake.env(),
        )
        run.wait_line("child ready")
        fake.interrupt(ec2=False)  # DesiredStatus STOPPED while RUNNING
        run.wait_line("child got SIGTERM")
        begun = run.wait_event("shutdown.started")
        assert begun["source"] == "watch"
        run.send(signal.SIGTERM)  # the platform's SIGTERM, later: not passed on again
        run.wait_event("signal.absorbed")
        run.send(signal.SIGUSR1)
        assert run.wait() == 0, run.transcript()
    forwarded = [e["signal"] for e in run.events() if e["event"] == "signal.forwarded"]
    assert forwarded == ["SIGTERM", "SIGUSR1"]


def test_an_ec2_spot_notice_sets_the_deadline_from_its_time(started: list[Supervised]) -> None:
    with FakeEndpoints() as fake:
        run = start(
            started,
            ["--watch", "ec2", "--watch-interval", "0.2", *program("ignore_term.py")],
            pid1=True,
            env=fake.env(),
        )
        run.wait_line("ready")
        fake.interrupt(warning=4.0, ecs=False)  # instance-action "time" 4 s ahead
        code = run.wait(timeout=30)
    assert code == 137, run.transcript()
    begun = run.wait_event("shutdown.started")
    assert begun["source"] == "watch"
    # max(within - margin 3, within / 2) with within <= 4: at most 2 s, not 27.
    assert 0 < begun["deadline_in"] <= 2.0
    assert run.wait_event("shutdown.deadline_exceeded")["action"] == "SIGKILL"
