#!/usr/bin/env python3
"""A Redis Streams queue worker that loses no message when its container stops.

    python examples/queue_worker.py produce --count 100      # add 100 jobs
    python examples/queue_worker.py work                     # consume them

The queue is a Redis stream read through a consumer group, so every message a
worker has received stays in the group's pending list until the worker
acknowledges it (``XACK``) *after* processing it. On SIGTERM (ECS stop, Spot
reclaim, ``docker stop``) the worker:

1. stops reading new messages (``grace.stopping``; at most ``--block`` later);
2. finishes the messages already in hand and acknowledges them (the drain
   waits for ``grace.inflight()``), or, for those that would not fit in
   what is left of the budget (``--max-work-seconds``), puts them back on
   the stream at once;
3. exits 0 well before the platform's SIGKILL.

If it dies without that chance (``kill -9``, OOM, the watchdog), its
unacknowledged messages are still pending: a worker restarted under the same
``--consumer`` name takes its own pending messages first, and any worker
claims those another consumer left idle for ``--claim-idle`` seconds
(``XAUTOCLAIM``). Delivery is therefore at least once: make processing
idempotent. Here the result and the ack go in one ``MULTI`` transaction, so a
message's result is recorded exactly when it is acknowledged.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

import redis

import spotgrace

Message = tuple[str, dict[str, str]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["work", "produce"])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    p.add_argument("--stream", default="jobs")
    p.add_argument("--group", default="workers")
    p.add_argument("--consumer", default=os.environ.get("WORKER_NAME", socket.gethostname()))
    p.add_argument("--results", default="jobs:results", help="list the results are pushed to")
    p.add_argument("--batch", type=int, default=5, help="messages read at once")
    p.add_argument("--block", type=float, default=1.0, help="seconds one read may wait")
    p.add_argument("--claim-idle", type=float, default=60.0,
                   help="claim messages other consumers left pending this long (s)")  # fmt: skip
    p.add_argument("--work-seconds", type=float, default=0.05, help="simulated work per message")
    p.add_argument("--max-work-seconds", type=float, default=5.0,
                   help="the most one message may take: after the notice, a message in hand "
                        "is started only if this fits in what is left, else put back")  # fmt: skip
    p.add_argument("--count", type=int, default=100, help="produce: how many messages")
    return p.parse_args(argv)


def ensure_group(r: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless they exist."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Worker:
    """Reads, processes and acknowledges messages of one consumer."""

    def __init__(self, r: redis.Redis, args: argparse.Namespace) -> None:
        self.r, self.args = r, args
        self.own_pending_done = False
        self.next_claim = 0.0
        self.processed = 0
        self.put_back_count = 0

    def _messages(self, entries: Any) -> list[Message]:
        """The (id, fields) pairs; those whose message was deleted (no fields) are acked."""
        gone = [mid for mid, fields in entries if not fields]
        if gone:
            self.r.xack(self.args.stream, self.args.group, *gone)
        return [(mid, fields) for mid, fields in entries if fields]

    def next_batch(self) -> list[Message]:
        """Own pending messages first, then idle ones of dead consumers, then new ones."""
        a = self.args
        if not self.own_pending_done:
            reply: Any = self.r.xreadgroup(a.group, a.consumer, {a.stream: "0"}, count=a.batch)
            entries = reply[0][1] if reply else []
            if entries:
                return self._messages(entries)
            self.own_pending_done = True
        if time.monotonic() >= self.next_claim:
            self.next_claim = time.monotonic() + max(a.claim_idle / 2, 0.1)
            claimed: Any = self.r.xautoclaim(
                a.stream, a.group, a.consumer, min_idle_time=int(a.claim_idle * 1000),
                start_id="0-0", count=a.batch,
            )  # fmt: skip
            entries = claimed[1]
            if entries:
                return self._messages(entries)
        reply = self.r.xreadgroup(
            a.group, a.consumer, {a.stream: ">"}, count=a.batch, block=int(a.block * 1000)
        )
        return self._messages(reply[0][1]) if reply else []

    def put_back(self, message: Message) -> None:
        """Return a message in hand to the queue at once: re-add it and ack the original.

        Both in one MULTI, so the message is never lost nor doubled. It goes to
        the end of the stream with a new id; any worker takes it next.
        """
        mid, fields = message
        with self.r.pipeline(transaction=True) as pipe:
            pipe.xadd(self.args.stream, fields)  # type: ignore[arg-type]
            pipe.xack(self.args.stream, self.args.group, mid)
            pipe.execute()
        self.put_back_count += 1

    def handle(self, message: Message) -> None:
        """Process one message, then record its result and acknowledge it atomically."""
        mid, fields = message
        time.sleep(self.args.work_seconds)  # the real work goes here
        with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(self.args.results, fields.get("job", mid))
            pipe.xack(self.args.stream, self.args.group, mid)
            pipe.execute()
        self.processed += 1


def fits_in_budget(grace: spotgrace.Grace, seconds: float) -> bool:
    """Whether work of ``seconds`` started now ends before the shutdown deadline."""
    return not grace.stopping or grace.remaining() >= seconds


def work(args: argparse.Namespace) -> None:
    # socket_timeout must exceed --block, or a quiet queue looks like a dead server.
    r = redis.Redis.from_url(args.redis_url, socket_timeout=args.block + 5, decode_responses=True)
    ensure_group(r, args.stream, args.group)
    worker = Worker(r, args)

    with spotgrace.graceful() as grace:

        @grace.on_shutdown(name="leave consumer group")
        def leave_group() -> None:
            # Tidy: forget this consumer if it holds no pending message.
            pending = r.xpending_range(args.stream, args.group, "-", "+", 1, args.consumer)
            if not pending:
                r.xgroup_delconsumer(args.stream, args.group, args.consumer)

        print(f"worker {args.consumer} ready", flush=True)
        while not grace.stopping:
            batch = worker.next_batch()
            # Messages read are in hand even if shutdown began during the read:
            # finish those that fit in the budget (the drain waits for them),
            # put the others back, then stop.
            with grace.inflight():
                for message in batch:
                    if fits_in_budget(grace, args.max_work_seconds):
                        worker.handle(message)
                    else:
                        worker.put_back(message)
        print(
            f"worker {args.consumer} stopping after {worker.processed} messages, "
            f"{worker.put_back_count} put back",
            flush=True,
        )


def produce(args: argparse.Namespace) -> None:
    r = redis.Redis.from_url(args.redis_url)
    ensure_group(r, args.stream, args.group)
    with r.pipeline(transaction=False) as pipe:
        for i in range(args.count):
            pipe.xadd(args.stream, {"job": str(i)})
        pipe.execute()
    print(f"added {args.count} messages to {args.stream}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "produce":
        produce(args)
    else:
        work(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
