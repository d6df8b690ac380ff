"""A warm worker's life: adopt a slot, drain the jobs queue, leave when idle, old or told to stop (D8).

The pipe starts a task per wake message; the task adopts the worker slot the message names (or takes a free one,
or exits at once when none is free: that is what bounds the fleet to ``max_workers``). Then it takes batch
messages from the jobs queue itself, one at a time with long polling, holds each one invisible to other workers
for its slot lease (extended while it works), and deletes it once every job in it is terminal, someone else's,
or handed back in a new message. A malformed message is logged and deleted; it never stops the loop.

It leaves when the queue has been empty for ``worker_idle_exit_s``, when it has lived ``worker_max_lifetime_s``
(so a new task definition rolls in), on SIGTERM, or when it loses its slot. Leaving idle is a handshake that
closes the race with a waker: the slot is first marked ``exiting`` (not live: a waker that enqueues now starts
someone else), then the queue is polled once more, so work enqueued by a waker that still saw this worker as live
is found. Leaving old or stopped with work still queued hands the slot to a replacement task.

While a worker works, it also decides (one worker per ``worker_scale_interval_s`` across the fleet) whether the
backlog needs more workers: one per ``jobs_per_worker`` jobs waiting.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from runtime.common import messages, metrics
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.messages import BadMessage, WakeMessage
from runtime.common.settings import Settings
from runtime.common.workers import (
    AWS_ERRORS,
    EXIT_GRACE_S,
    Waker,
    WorkerSlots,
    desired_workers,
    new_wake_id,
    queue_depth,
)
from runtime.worker.batch import BatchRunner, new_worker_id
from runtime.worker.models import ModelRegistry
from runtime.worker.models_s3 import build_registry

log = logging.getLogger(__name__)

# The last poll of a worker on its way out; shorter than the exit grace, so the process is gone before the slot
# is free again.
FINAL_POLL_S = 2
LONG_POLL_MAX_S = 20  # SQS's longest long poll
STOP_CHECK_S = 0.2  # how often the worker looks at its stop flag while a long poll is in flight
JOB_OUTCOMES = ("succeeded", "failed", "released", "skipped", "lost", "unclaimed", "requeued", "unresolved")


@dataclass
class DrainReport:
    worker_id: str
    slot: int | None = None
    exit_reason: str = ""  # no_slot | idle | lifetime | stopped | slot_lost
    messages: int = 0  # batch messages taken
    dropped: int = 0  # malformed messages deleted
    jobs: Counter[str] = field(default_factory=Counter)
    woken: list[int] = field(default_factory=list)  # slots this worker woke (scale-up) or handed over
    unresolved: bool = False  # a job may still be RUNNING under our lease (DynamoDB refused its outcome)

    @property
    def ok(self) -> bool:
        return not self.unresolved

    def summary(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "slot": self.slot,
            "exit_reason": self.exit_reason,
            "messages": self.messages,
            "dropped": self.dropped,
            "jobs": dict(self.jobs),
            "woken": self.woken,
        }


class _SlotKeeper:
    """Renews the worker's slot, and the visibility of the message it works on, every third of the slot lease.

    A slot that is no longer ours (or that could not be renewed for most of a lease) sets ``stop``: the worker
    finishes what it holds and leaves, so two tasks never work under one slot for long.
    """

    def __init__(
        self,
        slots: WorkerSlots,
        slot: int,
        worker_id: str,
        *,
        sqs: Any,
        queue_url: str,
        lease_s: int,
        stop: threading.Event,
    ) -> None:
        self.slots = slots
        self.slot = slot
        self.worker_id = worker_id
        self.sqs = sqs
        self.queue_url = queue_url
        self.lease_s = lease_s
        self.stop = stop
        self.lost = threading.Event()
        self.exiting = False
        self._receipt: str | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._last_ok = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="slot-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def hold(self, receipt: str | None) -> None:
        with self._lock:
            self._receipt = receipt

    def _loop(self) -> None:
        while not self._done.wait(self.lease_s / 3):
            self.tick()

    def tick(self) -> None:
        if not self.exiting:
            try:
                if self.slots.renew(self.slot, self.worker_id):
                    self._last_ok = time.monotonic()
                else:
                    log.error("slot %d is no longer ours: finishing what we hold and leaving", self.slot)
                    self.lost.set()
                    self.stop.set()
            except AWS_ERRORS:
                log.exception("slot %d not renewed", self.slot)
                if time.monotonic() - self._last_ok > self.lease_s * 0.8:
                    log.error("slot %d not renewed for most of its lease: leaving", self.slot)
                    self.lost.set()
                    self.stop.set()
        with self._lock:
            receipt = self._receipt
        if receipt is not None:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=self.lease_s
                )
            except AWS_ERRORS:
                log.exception("message visibility not extended")


class _Poll:
    """One ``ReceiveMessage`` on a daemon thread, which its caller may stop waiting for (``abandon``)."""

    def __init__(self, sqs: Any, request: dict[str, Any], *, on_late_message: Callable[[dict[str, Any]], None]) -> None:
        self.sqs = sqs
        self.request = request
        self.on_late_message = on_late_message
        self.done = threading.Event()
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()

    def start(self) -> _Poll:
        threading.Thread(target=self._run, name="jobs-poll", daemon=True).start()
        return self

    def abandon(self) -> bool:
        """Stop waiting; True unless the answer is already in (then the caller takes it as usual)."""
        with self._lock:
            if self.done.is_set():
                return False
            self._abandoned = True
            return True

    def _run(self) -> None:
        messages: list[dict[str, Any]] = []
        error: BaseException | None = None
        try:
            messages = self.sqs.receive_message(**self.request).get("Messages") or []
        except Exception as exc:  # handed to the caller, which logs or raises it
            error = exc
        with self._lock:
            self.messages, self.error = messages, error
            self.done.set()
            late = self._abandoned
        if late:  # nobody will work on these: make them visible to other workers now, not after the lease
            for message in messages:
                self.on_late_message(message)


class Drainer:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: ModelRegistry | Callable[[], ModelRegistry],
        store: JobStore,
        s3: Any,
        sqs: Any,
        slots: WorkerSlots,
        waker: Waker,
        stop: threading.Event,
        worker_id: str | None = None,
        metrics_stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # A registry, or how to build one: models are loaded only once the task holds a slot.
        self._registry = registry
        self.store = store
        self.s3 = s3
        self.sqs = sqs
        self.slots = slots
        self.waker = waker
        self.stop = stop
        self.worker_id = worker_id or new_worker_id()
        self.metrics_stream = metrics_stream or sys.stdout
        self.clock = clock
        self.report = DrainReport(worker_id=self.worker_id)
        self.keeper: _SlotKeeper | None = None
        self._jobs_per_message = 0.0
        self._next_scale_check = 0.0
        self._handed_back = False  # the last batch gave jobs back to the queue

    @property
    def registry(self) -> ModelRegistry:
        if not isinstance(self._registry, ModelRegistry):
            self._registry = self._registry()
        return self._registry

    def close_models(self) -> None:
        """Remove models this task downloaded (if it loaded any)."""
        if isinstance(self._registry, ModelRegistry):
            self._registry.close()

    # --- slot -----------------------------------------------------------------------------------------------
    def _take_slot(self, wake: WakeMessage | None) -> int | None:
        try:
            if wake is not None:
                if self.slots.adopt(wake.slot, wake.wake_id, self.worker_id):
                    return wake.slot
                log.warning("slot %d is no longer reserved for wake %s; taking a free one", wake.slot, wake.wake_id)
            return self.slots.acquire(self.worker_id)
        except AWS_ERRORS:
            log.exception("the worker slots cannot be read")
            return None

    # --- the queue ------------------------------------------------------------------------------------------
    def _receive(self, wait_s: int) -> dict[str, Any] | None:
        """One message from the jobs queue (long-polling up to ``wait_s``), or None: none came, or we were stopped.

        The long poll runs on a thread of its own so that SIGTERM is noticed within ``STOP_CHECK_S`` rather than
        after up to 20 s of poll: a stopped worker hands its slot over and exits well inside the stop timeout
        instead of being killed at its end. A message that the abandoned poll still receives is handed back."""
        poll = _Poll(
            self.sqs,
            {
                "QueueUrl": self.settings.queue_url,
                "MaxNumberOfMessages": 1,
                "WaitTimeSeconds": max(0, min(LONG_POLL_MAX_S, wait_s)),
                "VisibilityTimeout": self.settings.worker_slot_lease_s,
            },
            on_late_message=self._hand_back,
        ).start()
        while not poll.done.wait(STOP_CHECK_S):
            if self.stop.is_set() and poll.abandon():
                return None
        if isinstance(poll.error, AWS_ERRORS):
            log.error("receiving from the jobs queue failed", exc_info=poll.error)
            self.stop.wait(1.0)
            return None
        if poll.error is not None:
            raise poll.error
        return poll.messages[0] if poll.messages else None

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except AWS_ERRORS:  # it comes back after its visibility timeout; its jobs are done, so it is skipped
            log.exception("message %s not deleted", message.get("MessageId"))

    def _hand_back(self, message: dict[str, Any]) -> None:
        """Make a message visible again now, for another worker."""
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        except AWS_ERRORS:
            log.exception("message %s not handed back; it returns when it times out", message.get("MessageId"))

    def _handle(self, message: dict[str, Any]) -> None:
        try:
            batch = messages.decode(message.get("Body", ""))
        except BadMessage as exc:
            log.error("dropping malformed message %s: %s", message.get("MessageId"), exc)
            self.report.dropped += 1
            self._delete(message)
            return
        self.report.messages += 1
        n = self.report.messages
        self._jobs_per_message += (len(batch.job_ids) - self._jobs_per_message) / n
        assert self.keeper is not None
        self.keeper.hold(message["ReceiptHandle"])
        runner = BatchRunner(
            self.settings,
            registry=self.registry,
            store=self.store,
            s3=self.s3,
            sqs=self.sqs,
            worker_id=self.worker_id,
            stop=self.stop,
            metrics_stream=self.metrics_stream,
        )
        try:
            result = runner.run(list(batch.job_ids))
        finally:
            self.keeper.hold(None)
        for outcome in JOB_OUTCOMES:
            self.report.jobs[outcome] += len(getattr(result, outcome))
        self.report.unresolved |= not result.ok
        self._handed_back = bool(result.requeued) or result.handback_failed
        if result.settled:
            self._delete(message)
        elif self.stop.is_set():
            self._hand_back(message)  # stopping: the jobs we did not finish go to another worker now
        # else: a job is still RUNNING under our lease; the message returns after its visibility timeout

    # --- scaling --------------------------------------------------------------------------------------------
    def _maybe_scale(self) -> None:
        if not self.waker.enabled or self.clock() < self._next_scale_check:
            return
        self._next_scale_check = self.clock() + self.settings.worker_scale_interval_s
        try:
            if not self.slots.take_scale_turn(self.settings.worker_scale_interval_s):
                return  # another worker decides this round
            depth = queue_depth(self.sqs, self.settings.queue_url)
            waiting_jobs = depth.waiting * max(1.0, self._jobs_per_message)
            desired = desired_workers(
                waiting_jobs, jobs_per_worker=self.settings.jobs_per_worker, max_workers=self.settings.max_workers
            )
            live = len(self.slots.live())
            woken = self.waker.scale_to(desired, live)
        except AWS_ERRORS:
            log.exception("scale check failed; the next one tries again")
            return
        if woken:
            log.info("backlog ~%.0f jobs: woke %d (live %d, want %d)", waiting_jobs, len(woken), live, desired)
            self.report.woken.extend(woken)

    # --- leaving --------------------------------------------------------------------------------------------
    def _final_poll(self, slot: int) -> dict[str, Any] | None:
        """Idle: stop counting as live, then look once more for work a waker may have sent meanwhile."""
        assert self.keeper is not None
        self.keeper.exiting = True
        try:
            if not self.slots.begin_exit(slot, self.worker_id, grace_s=EXIT_GRACE_S):
                self.keeper.lost.set()
                return None
        except AWS_ERRORS:
            log.exception("slot %d not marked exiting; it frees itself when its lease passes", slot)
            return None
        message = self._receive(FINAL_POLL_S)
        if message is None:
            return None
        try:
            resumed = self.slots.resume(slot, self.worker_id)
        except AWS_ERRORS:
            resumed = False
        if not resumed:
            self._hand_back(message)
            return None
        self.keeper.exiting = False
        log.info("work arrived while leaving: staying")
        return message

    def _work_left(self) -> bool:
        try:
            depth = queue_depth(self.sqs, self.settings.queue_url)
        except AWS_ERRORS:
            return True
        return depth.waiting > 0 or depth.in_flight > 0

    def _leave(self, slot: int, reason: str) -> None:
        """Give the slot back: hand it to a replacement when work is left (old age, SIGTERM), else let it free
        itself after the exit grace."""
        if reason == "slot_lost":
            return
        try:
            if reason in ("lifetime", "stopped") and self.waker.enabled and (self._handed_back or self._work_left()):
                wake_id = new_wake_id()
                if self.slots.hand_over(slot, self.worker_id, wake_id) and self.waker.send(slot, wake_id):
                    self.report.woken.append(slot)
                    log.info("slot %d handed over to a new worker (%s)", slot, reason)
                    return
            if reason != "idle":
                self.slots.begin_exit(slot, self.worker_id, grace_s=EXIT_GRACE_S)
        except AWS_ERRORS:
            log.exception("slot %d not handed back; it frees itself when its lease passes", slot)

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, wake: WakeMessage | None) -> DrainReport:
        slot = self._take_slot(wake)
        if slot is None:
            log.warning("no free worker slot (max_workers %d): nothing to do", self.settings.max_workers)
            self.report.exit_reason = "no_slot"
            return self.report
        self.report.slot = slot
        metrics.emit(
            {metrics.WORKER_STARTS: 1},
            {metrics.SERVICE_DIMENSION: metrics.WORKER_SERVICE},
            namespace=self.settings.metrics_namespace,
            properties={"worker_id": self.worker_id, "slot": slot, "woken_by": wake.by if wake else None},
            stream=self.metrics_stream,
        )
        log.info("worker %s holds slot %d", self.worker_id, slot)
        self.keeper = _SlotKeeper(
            self.slots,
            slot,
            self.worker_id,
            sqs=self.sqs,
            queue_url=self.settings.queue_url,
            lease_s=self.settings.worker_slot_lease_s,
            stop=self.stop,
        )
        self.keeper.start()
        started = last_work = self.clock()
        idle_exit = self.settings.worker_idle_exit_s
        lifetime = self.settings.worker_max_lifetime_s
        reason = "stopped"
        try:
            while True:
                if self.keeper.lost.is_set():
                    reason = "slot_lost"
                    break
                if self.stop.is_set():
                    reason = "stopped"
                    break
                now = self.clock()
                if now - started >= lifetime:
                    reason = "lifetime"
                    break
                idle_for = now - last_work
                if idle_for >= idle_exit:
                    message = self._final_poll(slot)
                    if message is None:
                        reason = "slot_lost" if self.keeper.lost.is_set() else "idle"
                        break
                else:
                    # Short enough to notice a lost slot or the end of life within a third of a lease (SIGTERM:
                    # at once, see _receive).
                    wait = min(idle_exit - idle_for, lifetime - (now - started), self.settings.worker_slot_lease_s / 3)
                    message = self._receive(max(1, math.ceil(wait)))
                    if message is None:
                        continue
                if self.stop.is_set():
                    self._hand_back(message)
                    continue
                self._handle(message)
                last_work = self.clock()
                if not self.stop.is_set():
                    self._maybe_scale()
        finally:
            self.keeper.close()
            self.report.exit_reason = reason
            self._leave(slot, reason)
            log.info("worker leaving: %s", self.report.summary())
        return self.report


def drain(
    settings: Settings,
    *,
    wake: WakeMessage | None,
    stop: threading.Event,
    metrics_stream: IO[str] | None = None,
    registry: ModelRegistry | None = None,
) -> DrainReport:
    """What a woken worker task runs: the clients, the models (once per task), then ``Drainer.run``."""
    s3 = client("s3", settings)
    sqs = client("sqs", settings)
    dynamodb = client("dynamodb", settings)
    waker = Waker.from_settings(
        settings, by="worker", service=metrics.WORKER_SERVICE, sqs=sqs, dynamodb=dynamodb, metrics_stream=metrics_stream
    )
    drainer = Drainer(
        settings,
        registry=registry or (lambda: build_registry(settings, s3)),
        store=JobStore.from_settings(settings, dynamodb),
        s3=s3,
        sqs=sqs,
        slots=waker.slots,
        waker=waker,
        stop=stop,
        metrics_stream=metrics_stream,
    )
    try:
        return drainer.run(wake)
    finally:
        if registry is None:
            drainer.close_models()
