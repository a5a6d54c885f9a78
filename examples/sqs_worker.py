#!/usr/bin/env python3
"""An SQS worker that loses no message when its container stops (spotgrace.sqs).

    python examples/sqs_worker.py produce --queue-url URL --count 100
    python examples/sqs_worker.py work --queue-url URL --results-dir /data/results

Each message is a JSON job ``{"job": N, "seconds": S, "steps": K}``: the
worker "works" S seconds (``--work-seconds`` by default), in K steps when K is
given; ``"fail": true`` makes a poison message that fails every time. The effect of a job is one file, ``job-N``, in ``--results-dir``,
written atomically and keyed by the job, so a redelivered message overwrites
its own result (idempotent); each completion is also appended to
``completions.log`` so duplicates can be counted.

On SIGTERM (ECS stop, Spot reclaim, ``docker stop``) the worker stops
polling after the current poll, gives back the messages it has not started
(visibility 0: another worker gets them at once), finishes the running ones
within the budget (``SPOTGRACE_STOP_TIMEOUT``), gives back any that do not
finish, and exits 0 before the platform's SIGKILL. A job with steps and
``--checkpoint-dir`` saves its step after each one; at shutdown it hands off
(``PutBack``) and the next worker resumes at that step.

The endpoint, region and credentials come from the usual AWS variables
(``AWS_ENDPOINT_URL`` points it at a local moto server in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import boto3

import spotgrace
from spotgrace.checkpoint import FileCheckpoint, SyncCheckpointStore
from spotgrace.sqs import Message, PutBack, SQSConsumer


def say(line: str) -> None:
    """Print one whole line: spotgrace's JSON lines share stdout, and print()
    writes its newline apart, so one of them could land in between."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["work", "produce"])
    p.add_argument("--queue-url", default=os.environ.get("SQS_QUEUE_URL"), required=False)
    p.add_argument("--name", default=os.environ.get("WORKER_NAME", socket.gethostname()))
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="save per-message progress here (use a shared volume or Redis on ECS)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--prefetch", type=int, default=0)
    p.add_argument("--visibility-timeout", type=int, default=30)
    p.add_argument(
        "--wait-time", type=int, default=None, help="long-poll seconds (default: budget/5)"
    )
    p.add_argument("--work-seconds", type=float, default=0.05)
    p.add_argument("--max-receive-count", type=int, default=None)
    p.add_argument("--dead-letter-queue-url", default=None)
    p.add_argument("--count", type=int, default=10, help="produce: how many jobs")
    p.add_argument("--first", type=int, default=0, help="produce: number of the first job")
    p.add_argument("--seconds", type=float, default=None, help="produce: work per job")
    p.add_argument("--steps", type=int, default=None, help="produce: steps per job")
    p.add_argument("--fail", action="store_true", help="produce: poison jobs (always fail)")
    args = p.parse_args(argv)
    if not args.queue_url:
        p.error("--queue-url (or SQS_QUEUE_URL) is required")
    return args


def write_result(results: Path, job: int, worker: str) -> None:
    """The job's effect: one file per job, replaced atomically (a redelivery overwrites it)."""
    results.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=results, prefix=f".job-{job}-")
    with os.fdopen(fd, "w") as f:
        f.write(worker)
    os.replace(tmp, results / f"job-{job}")
    with open(results / "completions.log", "a") as log:  # one short append per completion
        log.write(f"{job} {worker}\n")


class FilePerMessage(SyncCheckpointStore):
    """One checkpoint file per message in a shared directory (EFS on ECS).

    Only the worker holding a message writes its file, so workers running at
    the same time never write the same file. On Fargate without a volume, use
    ``spotgrace.checkpoint.RedisCheckpoint`` instead.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _file(self, key: str) -> FileCheckpoint:
        return FileCheckpoint(self.directory / (re.sub(r"[^A-Za-z0-9-]", "_", key) + ".json"))

    def load(self, key: str) -> object:
        return self._file(key).load(key)

    def save(self, key: str, value: object) -> None:
        self._file(key).save(key, value)

    def clear(self, key: str) -> None:
        self._file(key).clear(key)


class Jobs:
    """The handler: runs one job per message."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def __call__(self, message: Message) -> None:
        job = json.loads(message.body)
        if job.get("fail"):  # a poison message: it fails on every delivery
            raise RuntimeError(f"job {job['job']} cannot be processed")
        seconds = float(job.get("seconds", self.args.work_seconds))
        steps = int(job.get("steps") or 1)
        if seconds >= 1:  # a long job: say so (the tests wait for it)
            say(f"job {job['job']} started")
        start = 0
        if self.args.checkpoint_dir is not None and steps > 1:
            saved = message.load_checkpoint()
            start = int(saved["step"]) if saved else 0
            if start:
                say(f"job {job['job']} resumed at step {start}")
        for step in range(start, steps):
            if step > start and message.stopping and self.args.checkpoint_dir is not None:
                message.save_checkpoint({"step": step})
                say(f"job {job['job']} handed off at step {step}")
                raise PutBack()
            time.sleep(seconds / steps)  # the real work goes here
        write_result(self.args.results_dir, int(job["job"]), self.args.name)


def work(args: argparse.Namespace) -> None:
    spotgrace.configure_json_logging()
    store = None
    if args.checkpoint_dir is not None:
        store = FilePerMessage(args.checkpoint_dir)
    consumer = SQSConsumer(
        args.queue_url,
        Jobs(args),
        checkpoint=store,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        visibility_timeout=args.visibility_timeout,
        wait_time_seconds=args.wait_time,
        max_receive_count=args.max_receive_count,
        dead_letter_queue_url=args.dead_letter_queue_url,
    )
    say(f"worker {args.name} ready")
    stats = consumer.run()  # after a SIGTERM the process exits from here (0 by default)
    say(f"worker {args.name} stopped: {stats}")


def produce(args: argparse.Namespace) -> None:
    sqs = boto3.client("sqs")
    jobs = list(range(args.first, args.first + args.count))
    for i in range(0, len(jobs), 10):
        entries = []
        for n in jobs[i : i + 10]:
            body: dict[str, object] = {"job": n}
            if args.seconds is not None:
                body["seconds"] = args.seconds
            if args.steps is not None:
                body["steps"] = args.steps
            if args.fail:
                body["fail"] = True
            entries.append({"Id": str(n), "MessageBody": json.dumps(body)})
        sqs.send_message_batch(QueueUrl=args.queue_url, Entries=entries)
    say(f"sent {args.count} jobs to {args.queue_url}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "produce":
        produce(args)
    else:
        work(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
