"""The same consumer with spotgrace.sqs (the benchmark's subject).

python bench/apps/sqs_spotgrace.py QUEUE_URL COMPLETIONS
"""

from __future__ import annotations

import json
import sys
import time

from spotgrace.sqs import Message, SQSConsumer


def main() -> None:
    queue_url, completions = sys.argv[1], sys.argv[2]

    def handle(m: Message) -> None:
        time.sleep(json.loads(m.body)["seconds"])  # the work
        with open(completions, "a") as f:
            f.write(m.message_id + "\n")

    # Holds up to 10 messages, like the plain loop's batch: 4 running, 6 waiting.
    consumer = SQSConsumer(queue_url, handle, concurrency=4, prefetch=6)
    print("ready", flush=True)
    consumer.run()


if __name__ == "__main__":
    main()
