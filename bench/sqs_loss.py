#!/usr/bin/env python3
"""Benchmark: SQS messages lost or late per 100 interruptions, plain boto3 loop vs spotgrace.sqs.

    python bench/sqs_loss.py [--trials 100] [--parallel 10] [--visibility 30] [--seed 1]

Everything runs against a moto server on 127.0.0.1 (fake credentials; nothing
reaches AWS). One trial: a fresh queue (``VisibilityTimeout`` ``--visibility``)
with 20 jobs of random length (0.1-1.0 s); a consumer process (the variant
under test) starts; after a random delay (0.2-2.5 s after it is ready) it gets
SIGTERM. From that moment the benchmark itself acts as "another worker": it
long-polls the queue, records when it picks up each message, and deletes it.
A trial ends when every job is accounted for (completed by the consumer or
picked up), or when the queue is empty (the rest is lost), or after
``visibility + 15`` s (the rest counts as lost).

Per variant it reports: jobs lost; jobs *redelivered* (received by the
consumer, not finished by it, picked up again: ``ApproximateReceiveCount`` >= 2;
for spotgrace.sqs these include messages a poll in progress took after the
notice) with the time from SIGTERM to their pick-up (p50/p95/max); how many of those were *late*
(picked up more than 5 s after SIGTERM); duplicates (completed by the consumer
and picked up again); and the consumer's time from SIGTERM to exit.

``--abort-probe`` also measures what aborting a long poll costs on moto: a
client whose read timeout (1 s) is shorter than its ``WaitTimeSeconds`` (5 s)
gives up; a message sent just after is taken by the abandoned poll and stays
invisible for the visibility timeout (on moto; AWS documents no guarantee
either way, which is why spotgrace.sqs bounds the poll instead of aborting it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
JOBS = 20
LATE = 5.0

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""

VARIANTS = {
    "plain boto3 loop (delete after work)": [str(BENCH / "apps" / "sqs_plain.py")],
    "plain boto3 loop (delete on receive)": [
        str(BENCH / "apps" / "sqs_plain.py"),
        "--early-delete",
    ],
    "spotgrace.sqs": [str(BENCH / "apps" / "sqs_spotgrace.py")],
}


@dataclass
class Trial:
    lost: int = 0
    put_back: list[float] = field(default_factory=list)  # SIGTERM -> pick-up, s
    duplicates: int = 0
    exit_after: float = 0.0


def client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


def run_trial(
    endpoint: str, argv: list[str], visibility: int, rng: random.Random, pickup_wait: int
) -> Trial:
    sqs = client(endpoint)
    queue = sqs.create_queue(
        QueueName=f"bench-{uuid.uuid4().hex[:12]}",
        Attributes={"VisibilityTimeout": str(visibility)},
    )["QueueUrl"]
    ids = set()
    for i in range(0, JOBS, 10):
        entries = [
            {"Id": str(j), "MessageBody": json.dumps({"seconds": round(rng.uniform(0.1, 1.0), 3)})}
            for j in range(i, i + 10)
        ]
        for ok in sqs.send_message_batch(QueueUrl=queue, Entries=entries)["Successful"]:
            ids.add(ok["MessageId"])
    delay = rng.uniform(0.2, 2.5)
    with tempfile.TemporaryDirectory() as tmp:
        completions = Path(tmp) / "done"
        env = {**os.environ, **FAKE_AWS, "AWS_ENDPOINT_URL": endpoint}
        env["SPOTGRACE_STOP_TIMEOUT"] = "30"
        proc = subprocess.Popen(
            [sys.executable, *argv[:1], queue, str(completions), *argv[1:]],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        exited: list[float] = []
        threading.Thread(
            target=lambda: (proc.wait(), exited.append(time.monotonic() - sent)), daemon=True
        ).start()
        picked: dict[str, tuple[float, int]] = {}
        end = sent + visibility + 15
        while time.monotonic() < end:
            done = set(completions.read_text().split()) if completions.exists() else set()
            if exited and ids <= done | set(picked):
                break
            reply = sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=pickup_wait,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )  # fmt: skip
            if not pickup_wait and not reply.get("Messages"):
                time.sleep(0.05)
            now = time.monotonic() - sent
            for m in reply.get("Messages", []):
                count = int(m["Attributes"]["ApproximateReceiveCount"])
                picked.setdefault(m["MessageId"], (now, count))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            if exited and not reply.get("Messages"):
                attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])
                a = attrs["Attributes"]
                if (
                    a["ApproximateNumberOfMessages"]
                    == a["ApproximateNumberOfMessagesNotVisible"]
                    == "0"
                ):
                    break  # nothing left anywhere: the rest is lost
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        done = set(completions.read_text().split()) if completions.exists() else set()
    t = Trial(exit_after=exited[0] if exited else float("nan"))
    t.lost = len(ids - done - set(picked))
    t.put_back = [at for mid, (at, count) in picked.items() if count >= 2 and mid not in done]
    t.duplicates = len(done & set(picked))
    sqs.delete_queue(QueueUrl=queue)
    return t


def pct(values: list[float], p: float) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return f"{v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]:.2f}"


def abort_probe(endpoint: str) -> str:
    """Abort a long poll (read timeout < WaitTimeSeconds); is a message sent after it lost?"""
    sqs = client(endpoint)
    queue = sqs.create_queue(QueueName=f"probe-{uuid.uuid4().hex[:8]}",
                             Attributes={"VisibilityTimeout": "30"})["QueueUrl"]  # fmt: skip
    impatient = client(endpoint, read_timeout=1, retries={"max_attempts": 1})
    try:
        impatient.receive_message(QueueUrl=queue, WaitTimeSeconds=5)
        return "the poll was not aborted (unexpected)"
    except Exception as exc:  # the read timeout is the point
        aborted = type(exc).__name__
    sqs.send_message(QueueUrl=queue, MessageBody="after the abort")
    time.sleep(0.5)
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", [])
    a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return (
        f"poll aborted by the client ({aborted}); message sent 0 s after, read 0.5 s later: "
        f"{'received' if got else 'NOT received'} (visible {a['ApproximateNumberOfMessages']}, "
        f"in flight {a['ApproximateNumberOfMessagesNotVisible']})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--parallel", type=int, default=10)
    p.add_argument("--visibility", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=sorted(VARIANTS), action="append")
    p.add_argument("--abort-probe", action="store_true")
    p.add_argument("--pickup-wait", type=int, default=1,
                   help="the other worker's WaitTimeSeconds; 0 = short polls every 50 ms "
                        "(moto re-checks re-visible messages in a long poll once a second)")  # fmt: skip
    args, _ = p.parse_known_args()
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, **FAKE_AWS})  # fmt: skip
    assert server.stdout is not None
    assert server.stdin is not None
    endpoint = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    try:
        if args.abort_probe:
            print("abort probe:", abort_probe(endpoint), flush=True)
        print(f"\n{args.trials} SIGTERMs per variant, {JOBS} jobs of 0.1-1.0 s per trial, "
              f"queue VisibilityTimeout {args.visibility} s, {args.parallel} trials at once, "
              f"pick-up WaitTimeSeconds {args.pickup_wait}, seed {args.seed}\n")  # fmt: skip
        print("| consumer | jobs lost | redelivered (received, not finished) "
              "| SIGTERM→pick-up p50 / p95 / max (s) | late (>5 s) | duplicates "
              "| SIGTERM→exit max (s) |")  # fmt: skip
        print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
        for name, argv in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            rngs = [random.Random(f"{args.seed}-{i}") for i in range(args.trials)]
            with ThreadPoolExecutor(args.parallel) as pool:
                futures = [
                    pool.submit(run_trial, endpoint, argv, args.visibility, r, args.pickup_wait)
                    for r in rngs
                ]
                trials = [f.result() for f in futures]
            back = [x for t in trials for x in t.put_back]
            exits = [t.exit_after for t in trials]
            print(
                f"| {name} | {sum(t.lost for t in trials)} | {len(back)} | "
                f"{pct(back, 50)} / {pct(back, 95)} / {pct(back, 100)} | "
                f"{sum(1 for x in back if x > LATE)} | {sum(t.duplicates for t in trials)} | "
                f"{max(exits):.2f} (median {statistics.median(exits):.2f}) |",
                flush=True,
            )
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
