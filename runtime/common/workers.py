"""Worker slots and wakes: how many worker tasks run at once, and who starts one (docs/architecture.md D8).

EventBridge Pipes has no concurrency limit and ECS is not a batching target, so the bound on worker tasks lives
here. The job table holds ``max_workers`` slot items, ``slot#0`` .. ``slot#<max_workers - 1>``. A worker task
works only while it holds a slot, and every change to a slot is one conditional write, so however many wakes
race, at most ``max_workers`` tasks hold a slot at once. A slot is in one of these states:

- free: no item, or its lease has passed;
- ``waking``: reserved by a waker (holder = the wake id) for a task that has not started yet. Its lease is
  ``worker_start_timeout_s``: a RunTask that never starts a task (capacity, quota, image pull) frees the slot by
  expiry, and the next wake can use it;
- ``running``: adopted by the task the wake started (holder = its worker id), renewed every third of
  ``worker_slot_lease_s``; a task killed without warning frees it when the lease passes;
- ``exiting``: the worker is on its way out. The slot is not free until a short grace has passed, so the
  exiting process is gone before a new task can take its place; it does not count as live for wake decisions.

Whoever wakes a worker first reserves a slot, then sends the wake message naming it (one wake message = one
task, started by the pipe); if the send fails the reservation is cancelled. Wakers: the API after it enqueues
work and sees no live worker, a worker that sees more backlog than the live workers can drain soon (one more per
``jobs_per_worker`` waiting jobs, decided by one worker at a time through ``take_scale_turn``), a worker handing
its slot over at the end of its life, and the reconciler as the safety net.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import uuid
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import metrics, schema
from runtime.common.jobs import deserialize, now_ms
from runtime.common.messages import WakeMessage

log = logging.getLogger(__name__)

WAKING = "waking"
RUNNING = "running"
EXITING = "exiting"
LIVE_STATES = frozenset({WAKING, RUNNING})
# An exiting slot stays taken this long after its worker's last poll, so the process is gone before a new task
# can hold the slot (the bound is on processes, not on bookkeeping).
EXIT_GRACE_S = 10.0
AWS_ERRORS = (BotoCoreError, ClientError)


def slot_pk(number: int) -> str:
    return f"{schema.WORKER_SLOT_PK_PREFIX}{number}"


def new_wake_id() -> str:
    return uuid.uuid4().hex


def desired_workers(waiting_jobs: float, *, jobs_per_worker: int, max_workers: int) -> int:
    """One worker per ``jobs_per_worker`` jobs waiting in the queue (at least one while any wait), at most
    ``max_workers``: each live worker then has at most about ``jobs_per_worker`` jobs of backlog ahead of it."""
    if waiting_jobs <= 0:
        return 0
    return min(max_workers, max(1, math.ceil(waiting_jobs / jobs_per_worker)))


@dataclass(frozen=True)
class Slot:
    number: int
    state: str
    holder: str
    lease_expires_at: int

    def live(self, now: int) -> bool:
        return self.state in LIVE_STATES and self.lease_expires_at > now

    def taken(self, now: int) -> bool:
        return self.lease_expires_at > now


def _conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class WorkerSlots:
    """The slot items of the job table; every method is one or a few conditional writes."""

    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        *,
        max_workers: int,
        slot_lease_s: int,
        start_timeout_s: int,
        clock: Any = now_ms,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.client = dynamodb_client
        self.table = table_name
        self.max_workers = max_workers
        self.slot_lease_ms = slot_lease_s * 1000
        self.start_timeout_ms = start_timeout_s * 1000
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Any, dynamodb_client: Any | None = None, *, clock: Any = now_ms) -> WorkerSlots:
        from runtime.common.aws import client

        return cls(
            dynamodb_client or client("dynamodb", settings),
            settings.table,
            max_workers=settings.max_workers,
            slot_lease_s=settings.worker_slot_lease_s,
            start_timeout_s=settings.worker_start_timeout_s,
            clock=clock,
        )

    # --- reads ---------------------------------------------------------------------------------------------
    def read(self) -> dict[int, Slot]:
        """Every slot item that exists (strongly consistent): absent slots are free."""
        found: dict[int, Slot] = {}
        numbers = list(range(self.max_workers))
        for i in range(0, len(numbers), 100):
            keys = [{schema.TABLE_PARTITION_KEY: {"S": slot_pk(n)}} for n in numbers[i : i + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(10):
                out = self.client.batch_get_item(RequestItems=request)
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = deserialize(raw)
                    slot = Slot(int(item["slot"]), str(item["slot_state"]), str(item["holder"]), item["lease_ms"])
                    found[slot.number] = slot
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def live(self) -> list[Slot]:
        """Slots held by a running worker or reserved for one that is starting."""
        now = self.clock()
        return sorted((s for s in self.read().values() if s.live(now)), key=lambda s: s.number)

    # --- writes --------------------------------------------------------------------------------------------
    def _put_unless(self, item: dict[str, Any], taken: str, now: int) -> bool:
        """Put ``item`` unless it exists and ``taken`` (a condition on ``:now``) holds; False if it was taken."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=f"attribute_not_exists(#pk) OR NOT ({taken})",
                ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    def _put_if_free(self, number: int, state: str, holder: str, lease_ms: int) -> bool:
        now = self.clock()
        item = {
            schema.TABLE_PARTITION_KEY: {"S": slot_pk(number)},
            "slot": {"N": str(number)},
            "slot_state": {"S": state},
            "holder": {"S": holder},
            "lease_ms": {"N": str(now + lease_ms)},
            "changed_at": {"N": str(now)},
        }
        return self._put_unless(item, "lease_ms >= :now", now)

    def _update_if_held(
        self, number: int, holder: str, states: frozenset[str], *, state: str, new_holder: str, lease_ms: int
    ) -> bool:
        now = self.clock()
        names = {"#st": "slot_state"}
        values = {
            ":holder": {"S": holder},
            ":new_holder": {"S": new_holder},
            ":state": {"S": state},
            ":lease": {"N": str(now + lease_ms)},
            ":now": {"N": str(now)},
        }
        allowed = []
        for i, s in enumerate(sorted(states)):
            values[f":s{i}"] = {"S": s}
            allowed.append(f":s{i}")
        try:
            self.client.update_item(
                TableName=self.table,
                Key={schema.TABLE_PARTITION_KEY: {"S": slot_pk(number)}},
                UpdateExpression="SET #st = :state, holder = :new_holder, lease_ms = :lease, changed_at = :now",
                ConditionExpression=f"holder = :holder AND #st IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    def _take_any(self, state: str, holder: str, lease_ms: int) -> int | None:
        """Take a free slot: read them all, then try the free ones in random order (wakers spread out)."""
        now = self.clock()
        slots = self.read()
        free = [n for n in range(self.max_workers) if n not in slots or not slots[n].taken(now)]
        random.shuffle(free)
        for number in free:
            if self._put_if_free(number, state, holder, lease_ms):
                return number
        return None

    def reserve(self, wake_id: str) -> int | None:
        """A free slot, reserved for the task ``wake_id`` is about to start; None when every slot is taken."""
        return self._take_any(WAKING, wake_id, self.start_timeout_ms)

    def acquire(self, worker_id: str) -> int | None:
        """A free slot for a worker that started without a reservation of its own (or lost it)."""
        return self._take_any(RUNNING, worker_id, self.slot_lease_ms)

    def adopt(self, number: int, wake_id: str, worker_id: str) -> bool:
        """The woken task takes over its reservation (even one past its start timeout, if nobody took it)."""
        if not 0 <= number < self.max_workers:
            return False
        return self._update_if_held(
            number, wake_id, frozenset({WAKING}), state=RUNNING, new_holder=worker_id, lease_ms=self.slot_lease_ms
        )

    def renew(self, number: int, worker_id: str) -> bool:
        """False when the slot is no longer ours: the worker must stop taking work."""
        return self._update_if_held(
            number, worker_id, frozenset({RUNNING}), state=RUNNING, new_holder=worker_id, lease_ms=self.slot_lease_ms
        )

    def begin_exit(self, number: int, worker_id: str, *, grace_s: float = EXIT_GRACE_S) -> bool:
        """Not live any more (wakers start someone else), but not free until ``grace_s`` has passed."""
        return self._update_if_held(
            number, worker_id, frozenset({RUNNING}), state=EXITING, new_holder=worker_id, lease_ms=int(grace_s * 1000)
        )

    def resume(self, number: int, worker_id: str) -> bool:
        """An exiting worker found work after all: running again."""
        return self._update_if_held(
            number, worker_id, frozenset({EXITING}), state=RUNNING, new_holder=worker_id, lease_ms=self.slot_lease_ms
        )

    def hand_over(self, number: int, worker_id: str, wake_id: str) -> bool:
        """Pass our slot to the task ``wake_id`` will start (end of life, or a stop with work left)."""
        return self._update_if_held(
            number,
            worker_id,
            frozenset({RUNNING, EXITING}),
            state=WAKING,
            new_holder=wake_id,
            lease_ms=self.start_timeout_ms,
        )

    def cancel(self, number: int, wake_id: str) -> bool:
        """Free a reservation whose wake message could not be sent."""
        return self._update_if_held(number, wake_id, frozenset({WAKING}), state=WAKING, new_holder=wake_id, lease_ms=0)

    def take_scale_turn(self, interval_s: float) -> bool:
        """True for one caller per ``interval_s`` across the fleet: that worker decides whether to wake more, so
        twenty workers seeing the same backlog do not each wake their own (no thundering herd)."""
        now = self.clock()
        item = {
            schema.TABLE_PARTITION_KEY: {"S": schema.FLEET_SCALER_PK},
            "next_turn_ms": {"N": str(now + int(interval_s * 1000))},
        }
        return self._put_unless(item, "next_turn_ms > :now", now)


@dataclass(frozen=True)
class QueueDepth:
    waiting: int  # messages visible: work no worker has taken yet
    in_flight: int  # messages a worker holds right now


def queue_depth(sqs: Any, queue_url: str) -> QueueDepth:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return QueueDepth(
        waiting=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


class Waker:
    """Reserves a slot, then sends the wake message that makes the pipe start a task for it."""

    def __init__(
        self,
        slots: WorkerSlots,
        sqs: Any,
        wake_queue_url: str,
        *,
        by: str,
        service: str,
        namespace: str = metrics.NAMESPACE,
        metrics_stream: IO[str] | None = None,
    ) -> None:
        self.slots = slots
        self.sqs = sqs
        self.wake_queue_url = wake_queue_url
        self.by = by
        self.service = service
        self.namespace = namespace
        self.metrics_stream = metrics_stream
        self.sent = 0

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        by: str,
        service: str,
        sqs: Any = None,
        dynamodb: Any = None,
        metrics_stream: Any = None,
        clock: Any = now_ms,
    ) -> Waker:
        from runtime.common.aws import client

        return cls(
            WorkerSlots.from_settings(settings, dynamodb, clock=clock),
            sqs or client("sqs", settings),
            settings.wake_queue_url,
            by=by,
            service=service,
            namespace=settings.metrics_namespace,
            metrics_stream=metrics_stream,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.wake_queue_url)

    def send(self, slot: int, wake_id: str) -> bool:
        """Send the wake message for a slot already reserved under ``wake_id``; cancel the reservation if the
        send fails (the next wake, or the reconciler, tries again)."""
        message = WakeMessage(slot=slot, wake_id=wake_id, by=self.by)
        try:
            self.sqs.send_message(QueueUrl=self.wake_queue_url, MessageBody=message.to_body())
        except AWS_ERRORS as exc:
            log.error("wake message for slot %d not sent (%s); slot freed", slot, exc)
            try:
                self.slots.cancel(slot, wake_id)
            except AWS_ERRORS:
                log.exception("slot %d not freed either: it frees itself after the start timeout", slot)
            return False
        self.sent += 1
        metrics.emit(
            {metrics.WORKER_WAKES: 1},
            {metrics.SERVICE_DIMENSION: self.service},
            namespace=self.namespace,
            properties={"slot": slot, "wake_id": wake_id, "by": self.by},
            stream=self.metrics_stream or sys.stdout,
        )
        log.info("woke a worker for slot %d (wake %s, by %s)", slot, wake_id, self.by)
        return True

    def wake(self) -> int | None:
        """Start one more worker if a slot is free; returns its slot, or None (no slot, or the send failed)."""
        if not self.enabled:
            return None
        wake_id = new_wake_id()
        slot = self.slots.reserve(wake_id)
        if slot is None:
            return None
        return slot if self.send(slot, wake_id) else None

    def ensure_worker(self) -> tuple[int, int | None]:
        """At least one worker, live or starting: (live slots seen, slot woken or None)."""
        if not self.enabled:
            return 0, None
        live = self.slots.live()
        if live:
            return len(live), None
        return 0, self.wake()

    def scale_to(self, desired: int, live: int) -> list[int]:
        """Wake ``desired - live`` more workers (as many as there are free slots)."""
        woken: list[int] = []
        for _ in range(max(0, min(desired, self.slots.max_workers) - live)):
            slot = self.wake()
            if slot is None:
                break
            woken.append(slot)
        return woken
