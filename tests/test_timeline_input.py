"""Bad input never crashes ``spotgrace.timeline``: it is skipped and counted.

The lines are real: a clean shutdown and a hook timeout run here with
``SPOTGRACE_EVENTS_FILE``; the tests then damage them (truncate, mix in other
output, change versions and types) the way logs get damaged in transit.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spotgrace.timeline import read_shutdowns, render_html, render_text
from tests.helpers.shutdowns import clean, hook_timeout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The events of a real clean shutdown, then of a real hook timeout, one file each."""
    tmp = tmp_path_factory.mktemp("timeline-input")
    return clean(tmp).events_file.splitlines() + hook_timeout(tmp).events_file.splitlines()


def render_all(lines: list[str]) -> tuple[int, str, str]:
    shutdowns, stats = read_shutdowns(lines)
    return len(shutdowns), render_text(shutdowns, stats), render_html(shutdowns, stats)


def test_the_real_lines_are_two_shutdowns(real: list[str]) -> None:
    shutdowns, stats = read_shutdowns(real)
    assert len(shutdowns) == 2
    assert stats.events == len(real)
    assert stats.skipped == 0


def test_truncated_lines_are_skipped_and_counted(real: list[str]) -> None:
    cut = [line[: len(line) // 2] if i in (3, 8, 20) else line for i, line in enumerate(real)]
    shutdowns, stats = read_shutdowns(cut)
    assert stats.malformed == 3
    assert stats.events == len(real) - 3
    assert "3 malformed" in stats.summary()
    assert len(shutdowns) == 2
    assert "skipped 3 malformed" in render_html(shutdowns, stats)


def test_every_truncation_of_every_line_renders(real: list[str]) -> None:
    for i, line in enumerate(real):
        for end in range(0, len(line), 5):
            n, text, page = render_all([*real[:i], line[:end], *real[i + 1 :]])
            assert n >= 1
            assert text
            assert page.endswith("</html>\n")


def test_unrelated_lines_are_skipped_and_counted(real: list[str]) -> None:
    noise = [
        "Traceback (most recent call last):",
        "worker: job 3 done",
        '{"event": "request handled", "path": "/", "timestamp": "2026-01-01T00:00:00Z"}',
        '["a", "json", "list"]',
        '{"msg": "another logger"}',
        "ERROR something odd happened: {not json at all",
        "",
    ]
    mixed = []
    for i, line in enumerate(real):
        mixed.append(line)
        if i < len(noise):
            mixed.append(noise[i])
    shutdowns, stats = read_shutdowns(mixed)
    assert stats.events == len(real)
    assert stats.unrelated == 6
    assert stats.blank == 1
    assert stats.malformed == 0
    assert [s.verdict for s in shutdowns] == [s.verdict for s in read_shutdowns(real)[0]]


def test_events_of_an_unknown_version_are_skipped_and_counted(real: list[str]) -> None:
    docs = [json.loads(line) for line in real]
    for doc in docs[::4]:
        doc["v"] = 2
    for doc in docs[1::4]:
        doc["v"] = 1  # the current version, spelled out
    shutdowns, stats = read_shutdowns(json.dumps(d) for d in docs)
    assert stats.unknown_version == len(docs[::4])
    assert stats.versions == {"2": len(docs[::4])}
    assert "of an unknown version" in stats.summary()
    assert stats.events == len(docs) - len(docs[::4])
    assert render_html(shutdowns, stats)


def test_events_without_a_usable_time_are_counted(real: list[str]) -> None:
    docs = [json.loads(line) for line in real]
    for doc in docs[2:7]:  # the events file also has an ISO `time`: take it away too
        doc.pop("time", None)
    del docs[2]["ts"]
    docs[4]["ts"] = "yesterday"
    docs[5]["ts"] = float("nan")
    docs[6]["ts"] = 1e300
    _, stats = read_shutdowns(json.dumps(d) for d in docs)
    assert stats.untimed == 4


def test_docker_timestamps_and_labels_give_the_time(real: list[str]) -> None:
    lines = []
    for line in real:
        doc = json.loads(line)
        when = datetime.fromtimestamp(doc.pop("ts"), tz=UTC)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # docker: nanoseconds
        lines.append(f"web-1  | {stamp} {json.dumps(doc)}")
    shutdowns, stats = read_shutdowns(lines)
    assert stats.events == len(real)
    originals, _ = read_shutdowns(real)
    assert [s.verdict for s in shutdowns] == [s.verdict for s in originals]
    for a, b in zip(shutdowns, originals, strict=True):
        assert a.notice_at == pytest.approx(b.notice_at, abs=1e-5)


def test_wrong_types_in_every_field_never_crash(real: list[str]) -> None:
    bad_values: list[object] = [None, "x", [], {"a": 1}, -1, 1e300, True, float("inf")]
    docs = [json.loads(line) for line in real]
    for i, doc in enumerate(docs):
        for key in doc:
            if key == "event":
                continue
            for value in bad_values:
                damaged = [*docs[:i], {**doc, key: value}, *docs[i + 1 :]]
                n, _, page = render_all([json.dumps(d) for d in damaged])
                assert n >= 1
                assert "<svg " in page


def test_shuffled_and_partial_input_never_crashes(real: list[str]) -> None:
    rng = random.Random(16)
    for _ in range(300):
        sample = rng.sample(real, rng.randint(0, len(real)))
        _, text, page = render_all(sample)
        assert text
        assert page


def test_no_shutdown_in_the_input() -> None:
    n, text, page = render_all(["hello", '{"event": "watch.started", "ts": 1}'])
    assert n == 0
    assert "no shutdown found" in text
    assert "No shutdown found" in page
    assert "1 before any notice" in text


def test_drain_progress_and_exit_events_are_drawn(real: list[str]) -> None:
    """``drain.progress`` (in-flight count during a drain) and ``shutdown.exit`` (code, why).

    A real shutdown ends with ``shutdown.exit``; ``drain.progress`` comes only
    during a drain longer than its cadence, so two are added here.
    """
    docs = [json.loads(line) for line in real]
    clean_docs = [d for d in docs if d["pid"] == docs[0]["pid"]]
    assert any(d["event"] == "shutdown.exit" for d in clean_docs)
    start = next(d for d in clean_docs if d["event"] == "shutdown.started")
    t0 = start["ts"] - start["elapsed"]
    extra = [
        {"ts": t0 + 0.05, "pid": start["pid"], "event": "drain.progress", "inflight": 3},
        {"ts": t0 + 0.08, "pid": start["pid"], "event": "drain.progress", "inflight": 2},
    ]
    shutdowns, _ = read_shutdowns(json.dumps(d) for d in clean_docs + extra)
    (s,) = shutdowns
    assert any(abs(t - 0.05) < 1e-3 and n == 3 for t, n in s.inflight)
    assert 3 in [n for _, n in s.inflight]
    assert 2 in [n for _, n in s.inflight]
    assert s.exit_code == 0
    assert s.exit_why is not None
    assert "finished" in s.exit_why
    assert s.clean
    assert "max 3" in render_html(shutdowns)
    assert f"exit 0 +{s.exit_at:.2f} s" in render_html(shutdowns)


def test_input_file_with_a_bad_encoding_is_read(tmp_path: Path, real: list[str]) -> None:
    from spotgrace.timeline._command import main

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xff\xfe garbage\n" + "\n".join(real).encode())
    import argparse
    import io

    args = argparse.Namespace(file=str(path), html=None, title="t", quiet=True)
    out = io.StringIO()
    assert main(args, out=out) == 1  # the hook timeout is not clean
    assert "1 unrelated" in out.getvalue()


def test_names_and_errors_cannot_inject_markup(real: list[str]) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    docs = [json.loads(line) for line in real]
    for doc in docs:
        if "hook" in doc:
            doc["hook"] = evil
        if doc["event"] == "shutdown.started":
            doc["reason"] = evil
    shutdowns, stats = read_shutdowns(json.dumps(d) for d in docs)
    page = render_html(shutdowns, stats)
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_late_notice_puts_the_deadline_on_the_signals_axis() -> None:
    # Read 3 ms after the signal: elapsed counts from the signal, deadline_in from
    # when it was read; deadline_at is the deadline on the elapsed axis (exact).
    t0 = 1_700_000_000.0
    started = {"event": "shutdown.started", "ts": t0 + 0.003, "pid": 7, "elapsed": 0.0031,
               "signal": "SIGTERM", "stop_timeout": 7.2, "margin": 0.72, "deadline_in": 6.477,
               "deadline_at": 6.48, "drain_delay": 0, "late": 0.003}  # fmt: skip
    old = {k: v for k, v in started.items() if k != "deadline_at"}  # an older spotgrace
    for fields, deadline in ((started, 6.48), (old, 6.477)):
        shutdowns, _ = read_shutdowns([json.dumps(fields)])
        assert shutdowns[0].deadline == pytest.approx(deadline)
        assert f"deadline +{deadline:.3f}" in render_text(shutdowns)
