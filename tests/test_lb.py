"""Behind a real load balancer: HAProxy (ALB-like) in front of two replicas, hey as the load.

Each spotgrace server gets a rolling restart under load: SIGTERM to one
replica mid-run, restarted once gone. Every run must show 0 client-visible
errors (no non-2xx, no connection error in hey's summary), the replica's exit
code 0, and the replica gone before its stop timeout. Short timing here
(health check every 0.5 s, 2 failures); ``bench/lb.py`` runs ALB timing.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.lb_harness import lb_run, parse_hey, tools_missing
from bench.lb_variants import GRACE, replica

pytestmark = pytest.mark.slow

INTER, FALL = 0.5, 2
#: More than interval x unhealthy threshold (1 s), with room for a loaded machine.
DRAIN_DELAY = 2.0
STOP_TIMEOUT = 10.0


def _need_tools() -> None:
    if missing := tools_missing():
        msg = f"{', '.join(missing)} not installed (python3 scripts/dev.py test installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the load-balancer tests", pytrace=False)
        pytest.skip(msg)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("variant", GRACE)
def test_rolling_restart_behind_haproxy_has_no_client_error(variant: str) -> None:
    _need_tools()
    rep = replica(variant, drain_delay=DRAIN_DELAY, stop_timeout=STOP_TIMEOUT)
    result = asyncio.run(
        lb_run(rep, inter=INTER, fall=FALL, duration=6.0, sigterm_at=1.5, rate=150)
    )
    detail = f"{variant}: {result.summary()} {result.errors}\n{result.replica_output[-3000:]}"
    assert result.ok > 300, detail  # the load really ran
    assert result.client_errors == 0, detail
    assert result.exit_code == 0, detail
    assert result.exit_seconds < STOP_TIMEOUT, detail
    assert result.exit_seconds >= DRAIN_DELAY * 0.9, detail  # the lame duck was kept
    assert result.restarted, detail


def test_parse_hey_counts_non_2xx_and_errors() -> None:
    out = """
Status code distribution:
  [200]\t120 responses
  [503]\t7 responses

Error distribution:
  [3]\tGet "http://127.0.0.1:1/": EOF
  [1]\tGet "http://127.0.0.1:1/": read: connection reset by peer
"""
    ok, non_2xx, errors = parse_hey(out)
    assert ok == 120
    assert non_2xx == {503: 7}
    assert sum(errors.values()) == 4


def test_parse_hey_rejects_other_output() -> None:
    with pytest.raises(ValueError, match="not hey"):
        parse_hey("segmentation fault")
