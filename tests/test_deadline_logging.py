"""Events reach the app's own logging set-up, and the JSON helper composes with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ._proc import ROOT


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTGRACE_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )


def test_events_go_through_stdlib_logging_when_only_it_is_configured() -> None:
    done = _run(
        "import logging, sys, spotgrace\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO,"
        " format='STD %(name)s %(levelname)s %(message)s')\n"
        "with spotgrace.graceful(signals=(), stop_timeout=5) as g:\n"
        "    g.request_shutdown('test')\n"
    )
    lines = done.stdout.splitlines()
    started = [x for x in lines if "shutdown.started" in x]
    assert started, done.stdout
    assert started[0].startswith("STD spotgrace INFO shutdown.started"), done.stdout
    assert "reason='test'" in started[0]
    assert any("shutdown.finished" in x for x in lines), done.stdout


def test_json_helper_leaves_an_apps_structlog_config_alone() -> None:
    done = _run(
        "import structlog, sys, spotgrace\n"
        "structlog.configure(processors=[lambda l, m, d: 'APP ' + d['event']],"
        " logger_factory=structlog.PrintLoggerFactory(sys.stdout))\n"
        "print('configured', spotgrace.configure_json_logging(stream=sys.stdout))\n"
        "with spotgrace.graceful(signals=(), stop_timeout=5) as g:\n"
        "    g.request_shutdown('test')\n"
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "configured False"
    assert "APP shutdown.started" in lines, done.stdout


def test_json_events_have_utc_iso_timestamps_and_rounded_floats() -> None:
    done = _run(
        "import sys, spotgrace\n"
        "spotgrace.configure_json_logging(stream=sys.stdout)\n"
        "with spotgrace.graceful(signals=(), stop_timeout=5, margin=0.333333333) as g:\n"
        "    g.request_shutdown('test')\n"
    )
    events = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    started = next(e for e in events if e["event"] == "shutdown.started")
    assert started["timestamp"].endswith("Z")
    assert started["margin"] == 0.3333
    assert all(len(repr(e.get("elapsed", 0.0))) <= 7 for e in events), events
