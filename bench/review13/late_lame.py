"""Coordinator.begin(late=...): the lame duck counts from the signal, and never takes
more than half the time left now. Sweeps drain_delay x late; prints violations."""

from __future__ import annotations

import itertools
import signal
import time

import structlog

import spotgrace

structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
bad = 0
n = 0
for stop_timeout, delay, late in itertools.product(
    (10.0, 30.0, 120.0),
    (0.0, 1.0, 5.0, 8.0, 13.0, 20.0, 60.0, 100.0),
    (0.0, 0.5, 2.0, 4.0, 9.0, 50.0, 200.0),
):
    try:
        spotgrace.graceful(signals=(), stop_timeout=stop_timeout, drain_delay=delay)
    except spotgrace.ConfigError:
        continue
    with spotgrace.graceful(
        signals=(),
        exit_code="return",
        stop_timeout=stop_timeout,
        drain_delay=delay,
        drain_timeout=0.01,
    ) as grace:
        c = grace._c
        late_eff = min(late, c.options.budget)  # what _late() would hand over
        if late_eff > c.options.budget - 2:  # the watchdog would end this process
            continue
        c.begin(source="signal", reason="t", sig=signal.SIGTERM, within=None, late=late_eff)
        now = time.monotonic()
        left_time = c._deadline - c.clock()
        lame_left = (c._stop_at - now) if c._stop_at is not None else 0.0
        n += 1
        problems = []
        if lame_left > 0.5 * max(left_time, 0) + 0.01:
            problems.append(f"lame {lame_left:.3f} > half of {left_time:.3f}")
        # from the signal: the lame duck ends at min(delay, budget/2) after it
        expect_end = min(delay, 0.5 * c.options.budget) - late_eff
        if abs(max(0.0, expect_end) - max(0.0, lame_left)) > 0.05:
            problems.append(f"lame ends in {lame_left:.3f}, expected {expect_end:.3f}")
        if problems:
            bad += 1
            print(stop_timeout, delay, late, problems)
print(f"{bad}/{n} combinations violate")
