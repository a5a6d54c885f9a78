"""An SQS consumer that loses no message when its container stops (extra ``spotgrace[sqs]``).

::

    from spotgrace.sqs import SQSConsumer

    def handle(message):            # runs in a thread pool; return = done
        process(message.body)       # make it idempotent: delivery is at least once

    SQSConsumer(queue_url, handle, concurrency=4).run()

Batch receive with a long poll bounded by the shutdown budget, a visibility
heartbeat while a message is held, delete after success, and at shutdown
visibility 0 for every message received but not finished, so another worker
gets it at once. See ``docs/sqs.md``.
"""

from __future__ import annotations

from .._core._errors import require_extra as _require_extra

_require_extra("spotgrace.sqs", "sqs", "boto3", "botocore")

from ._consumer import Handler as Handler
from ._consumer import SQSConsumer as SQSConsumer
from ._message import Message as Message
from ._message import PutBack as PutBack
from ._settings import ConsumerSettings as ConsumerSettings
from ._settings import default_wait_time as default_wait_time

__all__ = [
    "ConsumerSettings",
    "Handler",
    "Message",
    "PutBack",
    "SQSConsumer",
    "default_wait_time",
]
