"""``SQSConsumer``: batch receive, a thread pool of handlers, heartbeat, put-back at shutdown.

One thread polls (``ReceiveMessage``, long poll bounded by the budget), a
pool of daemon threads runs the handler, and a heartbeat thread keeps every
held message invisible. On the notice the poller stops after its current
poll, messages not started are given back at once (visibility 0), running
ones get the drain; a shutdown hook gives back whatever is still running when
the drain ends, and names those messages in the log.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

import spotgrace

from ._calls import CALL_ERRORS, SQSCalls, make_clients
from ._ledger import Held, Ledger, Status
from ._message import Message, PutBack
from ._settings import ConsumerSettings
from ._visibility import Keeper

if TYPE_CHECKING:
    from spotgrace.checkpoint import CheckpointStore

__all__ = ["Handler", "SQSConsumer"]

#: What a handler is: it gets one message; returning means success (delete it).
Handler = Callable[[Message], object]

#: The put-back hook runs before hooks of the default order 0, which may close
#: the connections it needs; alongside checkpointed()'s final save.
HOOK_ORDER = -100

#: Seconds a received message may have been on its way to us: its visibility
#: clock is taken to have started that much before the reply arrived.
_REPLY_MARGIN = 0.25

_log = structlog.get_logger("spotgrace.sqs")


class SQSConsumer:
    """Consume one SQS queue so that an interruption loses no message.

    ``handler(message)`` runs in a pool of ``concurrency`` threads; returning
    means done (the message is deleted), raising means failed (it comes back
    later), raising :class:`PutBack` gives it back at once. Options are the
    fields of :class:`ConsumerSettings`. ``client``: a boto3 SQS client for
    every call (give it a read timeout above ``wait_time_seconds``); by default
    two are made, the usual boto3 way (region, credentials, ``AWS_ENDPOINT_URL``).
    ``checkpoint``: a store for :meth:`Message.save_checkpoint`.
    """

    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        client: Any = None,
        region_name: str | None = None,
        checkpoint: CheckpointStore | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(queue_url, str) or not queue_url:
            raise TypeError(f"queue_url must be a non-empty str, got {queue_url!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        unknown = set(settings) - set(ConsumerSettings.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown SQSConsumer option(s): {', '.join(sorted(unknown))}")
        self.queue_url = queue_url
        self.handler = handler
        self.settings = ConsumerSettings(**settings)
        if self.settings.dead_letter_queue_url == queue_url:
            raise spotgrace.ConfigError("dead_letter_queue_url must not be the queue itself")
        self._client = client
        self._region = region_name
        self._store = checkpoint
        self._checkpoint_prefix = "sqs:" + queue_url.rstrip("/").rsplit("/", 1)[-1]
        self._ledger = Ledger()
        #: FIFO queue: the messages of a message group run one after another, in order.
        self._fifo = queue_url.rstrip("/").endswith(".fifo")
        #: One item per message, or per message group in one receive on a FIFO queue.
        self._work: queue.SimpleQueue[list[Held] | None] = queue.SimpleQueue()
        self._keeper: Keeper | None = None
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(
            (
                "received",
                "processed",
                "failed",
                "put_back",
                "abandoned",
                "dead_lettered",
                "heartbeats",
                "receive_errors",
            ),
            0,
        )
        self._calls: SQSCalls | None = None
        self._grace: spotgrace.Grace | None = None
        self._ran = False

    # ------------------------------------------------------------------ public

    def statistics(self) -> dict[str, int]:
        """Counts so far: received, processed (deleted), failed, put_back, abandoned..."""
        with self._stats_lock:
            return {**self._stats, "held": len(self._ledger)}

    def run(self, grace: spotgrace.Grace | None = None) -> dict[str, int]:
        """Consume until shutdown; returns :meth:`statistics`.

        Without ``grace`` it opens its own ``spotgrace.graceful()`` block (options
        from ``SPOTGRACE_*``), which after a SIGTERM ends the process with the exit
        policy (0 by default). With ``grace`` (your own block) it returns when
        intake stops; the block's drain and hooks finish the job.
        """
        if grace is not None:
            return self._run(grace)
        with spotgrace.graceful() as own:
            stats = self._run(own)
        return stats

    # ------------------------------------------------------------------ the loop

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    def _keep(self) -> Keeper:
        assert self._keeper is not None, "run() sets it up"
        return self._keeper

    def _run(self, grace: spotgrace.Grace) -> dict[str, int]:
        if self._ran:
            raise spotgrace.StateError("an SQSConsumer runs once")
        self._ran = True
        s = self.settings
        wait = s.wait_time_for(grace.options.budget)
        if self._client is not None:
            self._calls = SQSCalls(self.queue_url, self._client, self._client)
        else:
            poll, control = make_clients(wait, s.concurrency + 2, self._region)
            self._calls = SQSCalls(self.queue_url, poll, control)
        self._grace = grace
        self._keeper = Keeper(self._calls, self._ledger, s, grace, self._count)
        self._check_queue()
        grace.on_shutdown(order=HOOK_ORDER, name="sqs: give back messages")(self._give_back_all)
        for i in range(s.concurrency):
            self._daemon(self._worker, f"sqs-handler-{i}")
        self._daemon(self._keeper.heartbeat, "sqs-heartbeat")

        def wake_on_notice() -> None:
            grace.wait()
            self._ledger.wake()

        self._daemon(wake_on_notice, "sqs-stop-waker")
        _log.info(
            "sqs.started",
            queue=self.queue_url,
            concurrency=s.concurrency,
            wait_time_seconds=wait,
            visibility_timeout=s.visibility_timeout,
            heartbeat_every=round(s.heartbeat_every, 3),
            fifo=self._fifo,
        )
        try:
            self._poll_loop(grace, wait)
        finally:
            waiting = self._ledger.give_back(Status.WAITING)
            self._keep().put_back(waiting, why="received, not started")
            for _ in range(s.concurrency):
                self._work.put(None)
        return self.statistics()

    def _poll_loop(self, grace: spotgrace.Grace, wait: int) -> None:
        s = self.settings
        calls = self._calls
        assert calls is not None

        def stopping() -> bool:
            return grace.stopping

        while not stopping():
            room = self._ledger.wait_room(s.max_held, stopping)
            if stopping():
                break
            # The poll counts as in flight: the drain waits for it (at most one
            # poll), so what it brings back is given back, not left invisible.
            with grace.inflight():
                asked = time.monotonic()
                try:
                    raw = calls.receive(min(s.batch_size, room), wait, s.visibility_timeout)
                except CALL_ERRORS as exc:
                    self._count("receive_errors")
                    _log.error("sqs.receive_failed", error=repr(exc))
                    grace.wait(1.0)
                    continue
                if not raw:
                    if wait == 0:  # short polling: an empty queue must not make a busy loop
                        grace.wait(1.0)
                    continue
                # SQS starts the visibility timer when it picks the messages. A long poll
                # returns as soon as it has some, so that is just before the reply left:
                # count from then, less a margin for the reply's way here. A poll that
                # overran its wait was slow to answer: count from when it was asked.
                now = time.monotonic()
                since = asked if now - asked > wait else max(asked, now - _REPLY_MARGIN)
                msgs = [self._message(r) for r in raw]
                self._count("received", len(msgs))
                held = self._ledger.add(msgs, visible_until=since + s.visibility_timeout)
                if stopping():
                    back = [h for h in held if self._ledger.give_back_one(h)]
                    self._keep().put_back(back, why="received after the notice")
                    break
                for item in self._dispatch(held):
                    self._work.put(item)

    def _dispatch(self, held: list[Held]) -> list[list[Held]]:
        """Work items: one per message; on a FIFO queue one per message group, in order."""
        if not self._fifo:
            return [[h] for h in held]
        groups: dict[str, list[Held]] = {}
        for h in held:
            groups.setdefault(h.message.attributes.get("MessageGroupId", ""), []).append(h)
        return list(groups.values())

    def _message(self, raw: dict[str, Any]) -> Message:
        return Message(
            raw, grace=self._grace, store=self._store, checkpoint_prefix=self._checkpoint_prefix
        )

    def _check_queue(self) -> None:
        """Warn when poison messages could be retried forever (no redrive, no guard)."""
        assert self._calls is not None
        try:
            attrs = self._calls.control.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
        except CALL_ERRORS as exc:
            _log.info("sqs.queue_check_skipped", error=repr(exc))
            return
        if "RedrivePolicy" not in attrs and self.settings.max_receive_count is None:
            _log.warning(
                "sqs.no_dead_letter",
                queue=self.queue_url,
                hint="give the queue a redrive policy (maxReceiveCount >= 5) or set "
                "max_receive_count + dead_letter_queue_url: a poison message is retried forever",
            )

    @staticmethod
    def _daemon(target: Callable[[], object], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    # ------------------------------------------------------------------ handlers

    def _worker(self) -> None:
        grace = self._grace
        assert grace is not None
        me = threading.current_thread()
        base = me.name
        while True:
            item = self._work.get()
            if item is None:
                return
            for i, held in enumerate(item):
                # In flight before it starts, so the drain cannot miss it.
                with grace.inflight():
                    if grace.stopping or not self._ledger.start(held):
                        done = False
                        if self._ledger.give_back_one(held):
                            self._keep().put_back([held], why="received, not started")
                    else:
                        # The watchdog's report lists thread names: name the message.
                        me.name = f"{base} message={held.message.message_id}"
                        try:
                            done = self._handle(held)
                        finally:
                            me.name = base
                if not done and i + 1 < len(item):
                    # FIFO: the rest of its group must not overtake it; SQS keeps the
                    # group back while this one is invisible, and redelivers in order.
                    rest = [h for h in item[i + 1 :] if self._ledger.give_back_one(h)]
                    self._keep().put_back(
                        rest, why="an earlier message of its group did not finish"
                    )
                    break

    def _handle(self, held: Held) -> bool:
        """Run the handler; True if the message is done with (deleted or dead-lettered)."""
        m = held.message
        calls = self._calls
        assert calls is not None
        s = self.settings
        if s.max_receive_count is not None and m.receive_count > s.max_receive_count:
            assert s.dead_letter_queue_url is not None
            if self._ledger.release(held) and calls.dead_letter(m, s.dead_letter_queue_url):
                self._count("dead_lettered")
                _log.error(
                    "sqs.dead_lettered",
                    message_id=m.message_id,
                    receive_count=m.receive_count,
                    dead_letter_queue=s.dead_letter_queue_url,
                )
                return True
            return False
        try:
            self.handler(m)
        except PutBack:
            if self._ledger.release(held):
                self._keep().put_back([held], why="handed off by the handler")
            return False
        except BaseException as exc:  # a handler thread must survive its handler
            self._count("failed")
            # The traceback as text: a structured one (structlog's dict_tracebacks)
            # would carry the frames' local variables, i.e. message bodies and
            # whatever the handler held (tokens, signed requests), into the log.
            _log.error(
                "sqs.handler_failed",
                message_id=m.message_id,
                receive_count=m.receive_count,
                error=repr(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
            released = self._ledger.release(held)
            if released and s.retry_delay is not None and not held.expired():
                self._keep().set_visibility([m], s.retry_delay, why="retry delay")
            return False
        if not self._ledger.release(held):
            # Given back at the deadline, then finished: the work is done, so
            # delete it anyway (another worker may have it: a duplicate, allowed).
            _log.warning("sqs.finished_after_give_back", message_id=m.message_id)
        elif held.expired():
            # Its visibility ran out while it ran: another worker may have it (a
            # duplicate, allowed); SQS may refuse or ignore this old receipt handle.
            _log.warning("sqs.finished_after_visibility_lost", message_id=m.message_id)
        if calls.delete(m):
            self._count("processed")
            if self._store is not None:
                with contextlib.suppress(Exception):
                    m.clear_checkpoint()
        return True

    def _give_back_all(self) -> None:
        """The shutdown hook (after the drain): give back every message still held."""
        self._keep().stop.set()
        waiting = self._ledger.give_back(Status.WAITING)
        running = self._ledger.give_back(Status.RUNNING)
        now = time.monotonic()
        for h in running:
            _log.warning(
                "sqs.abandoned",
                message_id=h.message.message_id,
                running_for=round(now - (h.started_at or now), 3),
                thread=h.thread,
                hint="its handler did not finish within the drain; given back for redelivery",
            )
        self._count("abandoned", len(running))
        self._keep().put_back(waiting + running, why="shutdown")
        _log.info("sqs.stopped", **self.statistics())
