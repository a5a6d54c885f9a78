"""Randomized SIGTERM / SIGKILL trials against real workers: no task is lost.

The CI version is small (10 interruptions); ``bench/celery_loss.py`` runs
the same trials at scale and against plain Celery for comparison.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._redis import redis_server_fixture, redis_url_fixture  # noqa: F401 - fixtures
from .helpers.celery_trials import run_trials

pytestmark = pytest.mark.slow


def test_randomized_interruptions_lose_no_task_and_rerun_only_interrupted_ones(
    redis_url: str, tmp_path: Path
) -> None:
    report = run_trials(redis_url, tmp_path, mode="spotgrace", trials=10, seed=14, settle=10.0)
    summary = report.summary()
    assert report.lost == [], summary
    assert report.unexplained_reruns == [], summary
    terms = [i for i in report.interruptions if i.how == "term"]
    assert terms, "the seed gave no SIGTERM trial"
    assert not any(i.sigkilled for i in terms), f"a worker outlived stop_timeout: {summary}"
