"""A plain boto3 SQS consumer loop, as commonly written (the benchmark's baseline).

    python bench/apps/sqs_plain.py QUEUE_URL COMPLETIONS [--early-delete]

Long poll, a batch of 10, process each message, delete it. No signal
handling: SIGTERM ends it at once (as ``docker stop`` does to a non-PID-1
process; as PID 1 it would be SIGKILLed at ``stopTimeout`` instead).
``--early-delete``: delete right after receiving (a pattern seen in the wild).
"""

from __future__ import annotations

import json
import os
import sys
import time

import boto3


def main() -> None:
    queue_url, completions = sys.argv[1], sys.argv[2]
    early = "--early-delete" in sys.argv
    sqs = boto3.client("sqs")
    print("ready", flush=True)
    while True:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20)
        for m in reply.get("Messages", []):
            if early:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            time.sleep(json.loads(m["Body"])["seconds"])  # the work
            with open(completions, "a") as f:
                f.write(m["MessageId"] + "\n")
            if not early:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    main()
