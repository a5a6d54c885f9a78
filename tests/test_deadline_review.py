"""Review of issue 10's deadline work: hostile cases found after it landed.

Real processes, real signals (``tests/programs/deadline_review.py``); generous bounds.
"""

from __future__ import annotations

import signal

import pytest

from ._proc import kill_quietly, start

pytestmark = pytest.mark.slow


def test_children_forked_after_the_notice_are_not_hung_by_the_backstop() -> None:
    # faulthandler's timer armed in the parent at fork time left the child with
    # faulthandler's locks held by a thread it does not have: its own graceful()
    # hung at the notice, and a normal interpreter exit hung for ever.
    proc = start("deadline_review.py", "fork-armed")
    try:
        proc.wait_for_line("ready")
        proc.signal(signal.SIGTERM)
        proc.wait_for_line("child-plain-exit:", timeout=20)
        code = proc.finish(timeout=20)
    finally:
        kill_quietly(proc)
    printed = proc.printed()
    assert "child-own-graceful:0" in printed, proc.output()
    assert "child-plain-exit:0" in printed, proc.output()
    assert code == 0, proc.output()
