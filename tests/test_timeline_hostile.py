"""Hostile input for ``spotgrace timeline``: what a review found crashing or leaking through.

Each case is one line (or a few) that once raised out of ``read_shutdowns``
or the renderers (RecursionError, OverflowError, TypeError, ValueError,
UnicodeEncodeError), or carried terminal escapes into the text output. Now
each is skipped and counted, or shown with its unsafe characters spelled out.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from spotgrace.timeline import read_shutdowns, render_html, render_text
from spotgrace.timeline._files import bounded_lines

T0 = 1_700_000_000.0


def ev(name: str, at: float, pid: int = 100, **fields: Any) -> str:
    return json.dumps({"event": name, "ts": at, "pid": pid, **fields})


def started(pid: int = 100, **fields: Any) -> str:
    base = {"signal": "SIGTERM", "stop_timeout": 30, "margin": 3, "deadline_in": 27}
    return ev("shutdown.started", T0, pid, **{**base, "drain_delay": 0, **fields})


def render(lines: list[str]) -> tuple[str, str, Any]:
    shutdowns, stats = read_shutdowns(lines)
    text, page = render_text(shutdowns, stats), render_html(shutdowns, stats)
    text.encode("utf-8")  # a lone surrogate could not be written to a file or a terminal
    page.encode("utf-8")
    return text, page, stats


def test_json_nested_thousands_deep_is_malformed_not_a_recursion_error() -> None:
    deep = '{"event": "drain.started", "ts": 1700000000.1, "pid": 100, "x": '
    deep += "[" * 100_000 + "]" * 100_000 + "}"
    _, _, stats = render([started(), deep])
    assert stats.malformed == 1
    assert stats.events == 1


def test_json_nested_deeper_than_any_event_is_malformed() -> None:
    deep = ev("drain.started", T0 + 0.1, x=json.loads("[" * 500 + "]" * 500))
    _, _, stats = render([started(), deep])
    assert stats.malformed == 1


@pytest.mark.parametrize(
    "line",
    [
        '{"event": "shutdown.started", "ts": 1' + "0" * 400 + ', "pid": 1}',
        ev("shutdown.started", T0, elapsed=10**400),
        ev("shutdown.started", T0, deadline_in=-(10**400)),
    ],
)
def test_an_int_too_large_for_a_float_is_no_number(line: str) -> None:
    text, _, _ = render([line])
    assert text


@pytest.mark.parametrize("version", [[1], {"v": 1}, "1", 1.0, True])
def test_a_version_that_is_not_an_int_is_an_unknown_version(version: object) -> None:
    _, _, stats = render([ev("shutdown.started", T0, v=version)])
    assert stats.unknown_version == 1


@pytest.mark.parametrize("stuck", [5, "cleanup", {"a": 1}, ["a", 2]])
def test_stuck_hooks_of_any_type(stuck: object) -> None:
    lines = [started(), ev("shutdown.deadline_exceeded", T0 + 27, stuck_hooks=stuck, elapsed=27)]
    text, _, _ = render(lines)
    assert "the watchdog ended the process" in text


@pytest.mark.parametrize("elapsed", [99_999_999_999.0, -99_999_999_999.0, 1e10])
def test_a_corrupt_elapsed_on_the_notice_still_has_a_date(elapsed: float) -> None:
    text, page, _ = render([started(elapsed=elapsed)])
    assert "notice at 2023-11-14" in text
    assert "2023-11-14" in page


def test_a_shutdown_that_has_no_calendar_date_renders() -> None:
    shutdowns, stats = read_shutdowns([started()])
    shutdowns[0].notice_at = -1e11  # a library caller's own Shutdown
    assert "Unix time" in render_text(shutdowns, stats)
    assert "Unix time" in render_html(shutdowns, stats)


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\nverdict: CLEAN \u202e\ud800"


def test_terminal_escapes_newlines_bidi_and_surrogates_are_spelled_out() -> None:
    lines = [
        started(reason=HOSTILE),
        ev("cleanup.started", T0 + 0.1, hooks=1, elapsed=0.1),
        ev("hook.started", T0 + 0.1, hook=HOSTILE, elapsed=0.1),
        ev("hook.failed", T0 + 0.2, hook=HOSTILE, error=HOSTILE, elapsed=0.2, duration=0.1),
        ev("shutdown.finished", T0 + 0.3, clean=False, elapsed=0.3, **{HOSTILE: HOSTILE}),
    ]
    text, page, _ = render(lines)
    for out in (text, page):
        for bad in ("\x1b", "\x07", "\u202e", "\ud800"):
            assert bad not in out
    assert "\\x1b]0;pwned\\x07" in text  # shown, not obeyed
    assert not any(line.startswith("verdict: CLEAN") for line in text.splitlines())
    assert "\\nverdict: CLEAN" in text


def test_a_huge_string_is_cut() -> None:
    lines = [
        started(),
        ev("cleanup.started", T0 + 0.1, hooks=1, elapsed=0.1),
        ev("hook.failed", T0 + 0.2, hook="h", error="E" * 1_000_000, elapsed=0.2, duration=0.1),
    ]
    text, page, _ = render(lines)
    assert "more characters" in text
    assert len(text) < 50_000
    assert len(page) < 100_000


def test_bounded_lines_cuts_an_over_long_line_and_keeps_the_next() -> None:
    f = io.StringIO("x" * 100 + "\nshort\n" + "y" * 40)
    assert list(bounded_lines(f, limit=16)) == ["x" * 16, "short\n", "y" * 16]


EVENTS = "\n".join(
    [
        json.dumps(
            {
                "event": "shutdown.started",
                "ts": T0,
                "pid": 7,
                "signal": "SIGTERM",
                "stop_timeout": 30,
                "margin": 3,
                "deadline_in": 27,
                "drain_delay": 0,
            }
        ),
        json.dumps(
            {"event": "shutdown.finished", "ts": T0 + 0.2, "pid": 7, "clean": True, "elapsed": 0.2}
        ),
    ]
).encode()


def _cli(
    args: list[str], stdin: bytes | None, *, closed_stdin: bool = False, **env: str
) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "spotgrace", "timeline", *args]
    if closed_stdin:  # `spotgrace timeline <&-`
        command = ["sh", "-c", 'exec "$@" <&-', "sh", *command]
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def test_a_closed_stdin_is_exit_2_with_a_message() -> None:
    proc = _cli([], None, closed_stdin=True)
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr
    assert b"no stdin" in proc.stderr


def test_bytes_that_are_not_utf8_on_stdin_whatever_the_locale(tmp_path: Path) -> None:
    line = b'{"event": "shutdown.started", "ts": 1700000000, "pid": 1, "reason": "caf\xe9 \xff"}\n'
    out = tmp_path / "t.html"
    proc = _cli(["--html", str(out)], line, PYTHONIOENCODING="utf-8:strict")
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1  # one shutdown, cut off: not clean
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "caf\ufffd" in out.read_text(encoding="utf-8")


def test_a_line_over_the_limit_is_skipped_and_the_rest_is_read(tmp_path: Path) -> None:
    log = tmp_path / "big.jsonl"
    with open(log, "w", encoding="utf-8") as f:
        f.write(started() + "\n")
        f.write(ev("drain.started", T0 + 0.1, elapsed=0.1, junk="J" * (5 * 1024 * 1024)) + "\n")
        f.write(ev("shutdown.finished", T0 + 0.2, clean=True, elapsed=0.2) + "\n")
    proc = _cli([str(log), "--quiet"], None)
    assert proc.returncode == 0, proc.stderr
    assert b"2 events from 3 lines; skipped 1 malformed" in proc.stdout


def test_a_log_read_twice_is_one_clean_shutdown_not_a_killed_one() -> None:
    once = [
        started(),
        ev("cleanup.started", T0 + 0.1, hooks=0, elapsed=0.1),
        ev("shutdown.finished", T0 + 0.2, clean=True, elapsed=0.2),
    ]
    shutdowns, stats = read_shutdowns(once + once)
    assert len(shutdowns) == 1
    assert shutdowns[0].clean, shutdowns[0].verdict
    assert stats.duplicate == 3
    assert "skipped 3 repeated" in stats.summary()


def test_html_into_a_named_pipe_is_written_through_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "picture.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = _cli(["-", "--quiet", "--html", str(fifo)], EVENTS)
    reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the pipe, not a file put in its place
    assert got, "the reader of the pipe got nothing"
    assert got[0].rstrip().endswith(b"</html>")


def test_html_into_dev_fd_is_written_through() -> None:
    proc = _cli(["-", "--quiet", "--html", "/dev/fd/1"], EVENTS)
    assert proc.returncode == 0, proc.stderr
    assert b"<!DOCTYPE html>" in proc.stdout


def test_a_symlink_to_a_pipe_or_a_device_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses.fifo"
    os.mkfifo(target)
    planted = tmp_path / "out.html"
    planted.symlink_to(target)
    to_devnull = tmp_path / "null.html"
    to_devnull.symlink_to(os.devnull)
    for link in (planted, to_devnull):
        proc = _cli(["-", "--quiet", "--html", str(link)], EVENTS)
        assert proc.returncode == 0, proc.stderr
        assert not link.is_symlink()
        assert stat.S_IMODE(link.stat().st_mode) == 0o600
        assert link.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert stat.S_ISFIFO(target.lstat().st_mode)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def _clean_shutdown(pid: int, at: float, extra: list[str] | None = None) -> list[str]:
    return [
        json.dumps({"event": "shutdown.started", "ts": at, "pid": pid, "signal": "SIGTERM",
                    "stop_timeout": 30, "margin": 3, "deadline_in": 27, "drain_delay": 0}),
        *(extra or []),
        json.dumps({"event": "shutdown.finished", "ts": at + 0.5, "pid": pid, "clean": True,
                    "elapsed": 0.5}),
    ]  # fmt: skip


def test_a_page_of_thousands_of_shutdowns_draws_the_unclean_first() -> None:
    lines = [line for p in range(1, 1001) for line in _clean_shutdown(p, T0 + p)]
    lines.append(started(pid=5000))  # cut off: not clean, and the last one
    shutdowns, stats = read_shutdowns(lines)
    page = render_html(shutdowns, stats)
    assert page.count("<svg") == 100
    assert len(page) < 2_000_000
    unclean = page[page.index("<h2>pid 5000</h2>") :]
    assert unclean.index("<svg") < unclean.index("</section>")  # the unclean one is drawn
    assert "100 drawn (those not clean first)" in page
    assert render_text(shutdowns, stats).count("verdict:") == 1001  # the text has them all


def test_a_shutdown_with_thousands_of_hooks_draws_a_bounded_number() -> None:
    hooks = []
    for i in range(3000):
        hooks.append(ev("hook.started", T0 + 0.1, hook=f"h{i}", elapsed=0.1))
        hooks.append(ev("hook.finished", T0 + 0.2, hook=f"h{i}", duration=0.1, elapsed=0.2))
    shutdowns, stats = read_shutdowns(_clean_shutdown(100, T0, hooks))
    assert len(shutdowns[0].hooks) == 3000
    page = render_html(shutdowns, stats)
    assert "2900 more hooks" in page
    assert page.count("<rect") < 300
    assert len(page) < 200_000


def test_a_hundred_thousand_in_flight_counts_are_thinned() -> None:
    progress = [
        ev("drain.progress", T0 + 0.1 + i * 1e-6, inflight=(i * 7919) % 97, elapsed=0.1 + i * 1e-6)
        for i in range(100_000)
    ]
    shutdowns, stats = read_shutdowns(_clean_shutdown(100, T0, progress))
    assert len(shutdowns[0].inflight) > 50_000
    page = render_html(shutdowns, stats)
    assert len(page) < 200_000
    assert "max 96" in page  # the peak survives the thinning


@pytest.mark.parametrize("start", [-50.0, -1e10])
def test_a_hook_that_starts_before_the_notice_keeps_its_row_width(start: float) -> None:
    lines = [
        started(),
        ev("cleanup.started", T0, hooks=1, elapsed=0.0),
        ev("hook.started", T0, hook="early", elapsed=start),
        ev("hook.finished", T0 + 0.05, hook="early", elapsed=0.05),
        ev("shutdown.finished", T0 + 0.06, clean=True, elapsed=0.06),
    ]
    text, _, _ = render(lines)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("hook early"))
    assert len(row) < 150


def test_a_title_and_a_path_that_are_not_utf8(tmp_path: Path) -> None:
    assert "\ufffd" in render_html([], None, title="bad \udcff title")
    out = os.fsencode(tmp_path) + b"/\xff.html"
    proc = subprocess.run(
        [sys.executable, "-m", "spotgrace", "timeline", "-", "--quiet",
         "--html", out, "--title", b"bad \xff title"],
        input=EVENTS, capture_output=True, timeout=60, check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
    )  # fmt: skip
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0
    assert b"bad \xef\xbf\xbd title" in Path(os.fsdecode(out)).read_bytes()


def test_non_ascii_text_on_an_ascii_terminal_is_escaped() -> None:
    line = json.dumps({"event": "shutdown.started", "ts": T0, "pid": 1, "reason": "caf\u00e9"})
    proc = _cli(["-"], line.encode(), PYTHONIOENCODING="ascii")
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert b"caf\\xe9" in proc.stdout
