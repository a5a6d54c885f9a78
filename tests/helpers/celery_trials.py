"""Randomized interruptions of real Celery workers: how many tasks are lost.

One standby worker runs throughout (never interrupted). Each trial starts a
victim worker (prefork or threads), sends it a few tasks of random length
(some fit the budget, some do not), waits a random moment and interrupts it
the way a platform does: SIGTERM, then SIGKILL of its whole session at
``stop_timeout`` if it is still there (an ECS stop), or SIGKILL at once (a
crash). At the end the standby is given time to finish whatever came back.

A task is *lost* if it never completed. A *re-run* (a task started more than
once) is allowed only for a task that was started on a worker that was then
interrupted: that is the at-least-once contract of ``docs/celery.md``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from tests._proc import kill_quietly
from tests.helpers.celery_workers import QUEUE, Worker, kill_group, records, start_worker

__all__ = ["Interruption", "TrialReport", "run_trials"]


@dataclass
class Interruption:
    """One interruption of one victim worker."""

    worker: str
    how: str  # "term" (SIGTERM, SIGKILL at stop_timeout) or "kill" (SIGKILL at once)
    t: float  # wall-clock time of the first signal
    exited_after: float  # seconds from the first signal to the worker's exit
    sigkilled: bool  # still there at stop_timeout (term) or killed outright (kill)
    #: The worker's last spotgrace events (to tell why, when it outlived stop_timeout).
    last_events: list[str] = field(default_factory=list)


@dataclass
class TrialReport:
    """What a run of trials found."""

    mode: str
    interruptions: list[Interruption] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    reruns: dict[str, int] = field(default_factory=dict)
    unexplained_reruns: list[str] = field(default_factory=list)
    completed_twice: list[str] = field(default_factory=list)
    #: For each task completed twice: where the first completion happened,
    #: relative to the interruption of the worker that ran it.
    completed_twice_why: dict[str, str] = field(default_factory=dict)
    #: Seconds from SIGTERM to the start, on another worker, of a task that was
    #: running on the interrupted one.
    pickup_after_term: list[float] = field(default_factory=list)
    pickup_after_kill: list[float] = field(default_factory=list)
    #: Tasks running on a victim at SIGTERM that finished there before it exited.
    finished_in_budget: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts and timings, JSON-ready."""
        terms = [i for i in self.interruptions if i.how == "term"]

        def stats(xs: list[float]) -> dict[str, float] | None:
            if not xs:
                return None
            s = sorted(xs)
            return {
                "n": len(s),
                "median": round(s[len(s) // 2], 2),
                "max": round(s[-1], 2),
            }

        n = len(self.interruptions)
        return {
            "mode": self.mode,
            "interruptions": n,
            "sigterm": len(terms),
            "sigkill_at_once": n - len(terms),
            "sigterm_needed_sigkill": sum(i.sigkilled for i in terms),
            "tasks": len(self.submitted),
            "lost": len(self.lost),
            "lost_per_100_interruptions": round(100 * len(self.lost) / n, 1) if n else None,
            "reruns": len(self.reruns),
            "unexplained_reruns": len(self.unexplained_reruns),
            "completed_twice": len(self.completed_twice),
            "completed_twice_why": dict(Counter(self.completed_twice_why.values())),
            "finished_in_budget": self.finished_in_budget,
            "exit_after_sigterm_s": stats([i.exited_after for i in terms]),
            "outlived_stop_timeout": [
                {"worker": i.worker, "last_events": i.last_events} for i in terms if i.sigkilled
            ][:5],
            "pickup_after_sigterm_s": stats(self.pickup_after_term),
            "pickup_after_sigkill_s": stats(self.pickup_after_kill),
        }


def _interrupt(victim: Worker, how: str, stop_timeout: float) -> Interruption:
    t = time.time()
    sent = time.monotonic()
    sigkilled = how == "kill"
    if how == "term":
        victim.proc.signal(signal.SIGTERM)
        try:
            victim.proc.popen.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            sigkilled = True
    kill_group(victim, signal.SIGKILL)  # the platform's SIGKILL, or the container's end
    victim.proc.popen.wait()
    exited = time.monotonic() - sent
    kill_quietly(victim.proc)
    last = [f"{e.get('event')}@{e.get('elapsed', '')}" for e in victim.events()[-6:]]
    return Interruption(victim.name, how, t, exited, sigkilled, last)


def run_trials(
    broker: str,
    tmp: Path,
    *,
    mode: str,
    trials: int,
    seed: int,
    stop_timeout: float = 3.0,
    pools: tuple[str, ...] = ("prefork", "threads"),
    kill_share: float = 0.25,
    settle: float = 30.0,
    visibility: float | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TrialReport:
    """Run ``trials`` interruptions against workers of the test app in ``mode``."""
    rng = random.Random(seed)
    tmp.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(broker)
    client.flushall()
    sender = Celery("sender", broker=broker)
    longest = 2 * stop_timeout
    if visibility is None:
        # No running task outlives it; with prefetch 1 (spotgrace, soft) nothing
        # waits unstarted either, so only dead workers' messages come back.
        visibility = longest + 4
    env = {"SPOTGRACE_STOP_TIMEOUT": str(stop_timeout), "CELERY_TEST_VISIBILITY": str(visibility)}
    if mode == "soft":
        env["REMAP_SIGTERM"] = "SIGQUIT"  # read by billiard at import: SIGTERM = cold shutdown
    report = TrialReport(mode)
    standby = start_worker(broker, tmp, name="standby", mode=mode, env=env)
    victims: list[Worker] = []
    try:
        for i in range(trials):
            victim = start_worker(
                broker, tmp, name=f"v{i}", mode=mode, pool=rng.choice(pools), env=env
            )
            victims.append(victim)
            for k in range(rng.randint(2, 5)):
                tag = f"{i}-{k}"
                report.submitted.append(tag)
                seconds = round(rng.uniform(0.1, longest), 2)
                sender.send_task("celery_app.work", args=(tag, seconds), queue=QUEUE)
            time.sleep(rng.uniform(0.3, 2.0))
            how = "kill" if rng.random() < kill_share else "term"
            report.interruptions.append(_interrupt(victim, how, stop_timeout))
            log(f"{mode} trial {i + 1}/{trials}: {how}")
        # Whatever came back (at once, or after the visibility timeout) goes to the standby.
        end = time.monotonic() + visibility + longest + settle
        want = set(report.submitted)
        while time.monotonic() < end and not want <= {r["tag"] for r in records(client, "done")}:
            time.sleep(0.2)
    finally:
        kill_quietly(standby.proc)
        for v in victims:
            kill_quietly(v.proc)
        sender.close()
    _judge(report, records(client, "started"), records(client, "done"))
    client.close()
    return report


def _judge(report: TrialReport, started: list[dict[str, Any]], done: list[dict[str, Any]]) -> None:
    done_tags = Counter(r["tag"] for r in done)
    report.lost = [t for t in report.submitted if done_tags[t] == 0]
    report.completed_twice = [t for t, n in done_tags.items() if n > 1]
    by_worker = {i.worker: i for i in report.interruptions}
    for tag in report.completed_twice:
        first = min((d for d in done if d["tag"] == tag), key=lambda d: d["t"])
        cut = by_worker.get(first["worker"])
        if cut is None:
            why = "first completion on a worker never interrupted"
        elif first["t"] >= cut.t:
            why = f"completed after the {cut.how} on the interrupted worker"
        else:
            why = f"completed before the {cut.how}, ack not on the broker yet"
        report.completed_twice_why[tag] = why
    starts: dict[str, list[dict[str, Any]]] = {}
    for r in started:
        starts.setdefault(r["tag"], []).append(r)
    for tag, runs in starts.items():
        if len(runs) > 1:
            report.reruns[tag] = len(runs)
            interrupted = [
                r for r in runs if r["worker"] in by_worker and r["t"] < by_worker[r["worker"]].t
            ]
            if not interrupted:
                report.unexplained_reruns.append(tag)
    for tag, runs in starts.items():
        for r in runs:
            cut = by_worker.get(r["worker"])
            if cut is None or r["t"] >= cut.t:
                continue
            finished_there = any(
                d["tag"] == tag and d["worker"] == r["worker"] and d["t"] >= cut.t for d in done
            )
            if finished_there:
                report.finished_in_budget += 1
            later = [x["t"] for x in runs if x["worker"] != r["worker"] and x["t"] > cut.t]
            if later:
                target = report.pickup_after_term if cut.how == "term" else report.pickup_after_kill
                target.append(min(later) - cut.t)
