"""The batch record: one item per batch in the job table (``pk = "batch#<id>"``), the one place a batch's
lifecycle lives (docs/contracts.md, docs/architecture.md D9).

Why counters instead of counting jobs: a batch may hold 100,000 jobs, and whether it is finished must be known
at every job's last transition. Querying the batch there would cost a read of every job per job. Instead the
record keeps counters that move with atomic ``ADD`` updates:

- ``total``: ``reserve`` adds a request's jobs before the API writes them (one write per request, not per job);
  ``unreserve`` takes back jobs the API wrote and then deleted.
- ``done``, ``succeeded``, ``failed``: ``job_finished`` adds one, called only by the caller whose conditional job
  transition to SUCCEEDED or FAILED won (``JobStore``), so a job processed twice or re-driven counts once.
- A sealed batch whose ``done`` equals ``total`` is COMPLETED by ``try_complete``: one conditional update that
  only one caller can win, so two workers finishing the last two jobs at once, or a seal that arrives after the
  last job, give exactly one completion.

Extra writes: one per job (its terminal transition), one per upload request, a few per batch (create, seal,
complete, notification bookkeeping). A count lost between a job's transition and its ``ADD`` (a process killed
in between) is repaired by reconcile, which recounts a sealed batch whose counters stopped moving (``recount``).

Batches with background work due sit in the sparse, keys-only ``by_work`` index (``work`` + ``work_due_at``):
``settle`` while sealed (reconcile's recount backstop), ``notify`` once completed (report, events, webhook).
Later states (an S3 ingestion in progress) and an owner per client key fit the same record: ``owner`` is stored
and checked on every append, and states are an enum the API reports as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from botocore.exceptions import ClientError

from runtime.common import schema
from runtime.common.jobs import JobStatus, deserialize, now_ms, serialize


class BatchState(StrEnum):
    INGESTING = "INGESTING"  # the ingester is listing an S3 source into jobs (docs/ingestion.md); then SEALED
    OPEN = "OPEN"  # accepting images
    SEALED = "SEALED"  # no more images; completes once every job is SUCCEEDED or FAILED
    COMPLETED = "COMPLETED"  # every job finished; notifications follow (``work = notify``)


class Work(StrEnum):
    """What the background (reconcile and the results task's notify) has to do for a batch in ``by_work``."""

    INGEST = "ingest"  # ingesting: list the source from ``ingest_cursor`` on (a run that died is resumed)
    SETTLE = "settle"  # sealed: recount if the counters stop moving (a lost count), then complete
    NOTIFY = "notify"  # completed: export and report, the Batch Completed event, the webhook


class WebhookState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GAVE_UP = "gave_up"


class BatchError(Exception):
    """A request about a batch that its record refuses; ``batch`` is the record as it is now (None: none)."""

    def __init__(self, message: str, batch: Batch | None) -> None:
        super().__init__(message)
        self.batch = batch


class BatchNotOpen(BatchError):
    """Images were sent to a batch that is sealed (or completed)."""


class BatchConflict(BatchError):
    """The request names a notify_url or owner other than the batch's own."""


@dataclass(frozen=True)
class Reservation:
    """Jobs counted into a batch by ``reserve`` before they were written; ``created``: the batch is new."""

    batch_id: str
    jobs: int
    created: bool


def batch_pk(batch_id: str) -> str:
    return schema.BATCH_PK_PREFIX + batch_id


def _key(batch_id: str) -> dict[str, Any]:
    return {schema.TABLE_PARTITION_KEY: {"S": batch_pk(batch_id)}}


def _new_record(
    batch_id: str, state: BatchState, now: int, *, total: int, notify_url: str | None, owner: str | None
) -> dict[str, Any]:
    """The attributes every new batch record starts with (``serialize`` leaves out the None ones)."""
    return {
        schema.TABLE_PARTITION_KEY: batch_pk(batch_id),
        "batch_state": str(state),
        "opened_at": now,
        "total": total,
        "done": 0,
        "succeeded": 0,
        "failed": 0,
        "notify_url": notify_url,
        "owner": owner,
    }


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Batch:
    """One batch record as stored (times are epoch milliseconds)."""

    batch_id: str
    state: BatchState
    opened_at: int
    total: int = 0
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    owner: str | None = None
    notify_url: str | None = None
    sealed_at: int | None = None
    completed_at: int | None = None
    counted_at: int | None = None  # last change of the counters: reconcile recounts a batch whose counters stalled
    recounted_at: int | None = None
    event_id: str | None = None  # the Batch Completed event's id (also the webhook's), made at completion
    events_sent_at: int | None = None
    export_key: str | None = None
    report_key: str | None = None
    export_error: str | None = None
    export_tries: int = 0
    webhook: dict[str, Any] | None = None  # state, attempts [...], attempt_count, next_attempt_at, delivered_at
    work: str | None = None
    work_due_at: int | None = None
    # S3 ingestion (docs/ingestion.md): the source, what to make of it, where the listing stands, what it found.
    source: str | None = None
    source_kind: str | None = None
    ingest_spec: dict[str, Any] | None = None  # model, mm_per_pixel, suffixes, max_bytes
    ingest_cursor: str | None = None  # prefix: the last key checkpointed; manifest: "<byte offset>:<line number>"
    listed: int = 0  # objects or manifest lines read
    skipped: int = 0  # objects the filters left out (not images by name)
    ingest_note: str | None = None
    inbox_name: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Batch:
        """Attributes this class does not name (the notify lease) are left out."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("batch_id", "state")}
        return cls(
            batch_id=item[schema.TABLE_PARTITION_KEY].removeprefix(schema.BATCH_PK_PREFIX),
            state=BatchState(item["batch_state"]),
            **{k: item[k] for k in known if k in item},
        )

    @property
    def ready_to_complete(self) -> bool:
        return self.state == BatchState.SEALED and self.done >= self.total

    @property
    def counts(self) -> dict[str, int]:
        return {str(JobStatus.SUCCEEDED): self.succeeded, str(JobStatus.FAILED): self.failed}


# The DynamoDB actions of the batch store, by caller (stacks/constructs/grants.py grants each container the groups
# its code uses; see runtime/common/jobs.py).
INTAKE_ACTIONS: Final = (  # the API
    "dynamodb:GetItem",  # get
    "dynamodb:PutItem",  # create_ingesting, open_fresh
    "dynamodb:UpdateItem",  # create, reserve, seal, unreserve
    "dynamodb:DeleteItem",  # unreserve: a new record whose first request failed
)
PROGRESS_ACTIONS: Final = (  # the terminal hook of the worker's and the results task's job stores (progress.py)
    "dynamodb:UpdateItem",  # job_finished, try_complete
)
SETTLE_ACTIONS: Final = (  # the results task: reconcile's settle pass, notify
    "dynamodb:GetItem",  # get
    "dynamodb:UpdateItem",  # recount, try_complete, postpone, claim_notify, update_notify, release_notify
    "dynamodb:Query",  # due (by_work)
)
INGEST_ACTIONS: Final = (  # the results task's ingester (runtime/results/ingest/)
    "dynamodb:GetItem",  # get
    # reserve, unreserve (of a record it did not create: never a delete), start_ingesting, claim_ingest,
    # checkpoint, finish_ingesting
    "dynamodb:UpdateItem",
    "dynamodb:Query",  # due (by_work)
)


class BatchStore:
    """Every read and write of batch records (API, worker, results task)."""

    def __init__(self, dynamodb_client: Any, table_name: str, *, clock: Any = now_ms) -> None:
        self.client = dynamodb_client
        self.table = table_name
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Any, dynamodb_client: Any | None = None) -> BatchStore:
        from runtime.common.aws import client

        return cls(dynamodb_client or client("dynamodb", settings), settings.table)

    # --- low level ---------------------------------------------------------------------------------------
    def _update(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> Batch | None:
        """One (conditional) update; the new record, or None when the condition did not hold."""
        item = self._update_item(batch_id, expression, values, condition=condition, names=names, returns="ALL_NEW")
        return None if item is None else Batch.from_item(item)

    def _update_item(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None,
        names: dict[str, str] | None,
        returns: str,
    ) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(batch_id),
            "UpdateExpression": expression,
            "ReturnValues": returns,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            out = self.client.update_item(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return deserialize(out.get("Attributes", {}))

    def get(self, batch_id: str) -> Batch | None:
        out = self.client.get_item(TableName=self.table, Key=_key(batch_id), ConsistentRead=True)
        item = out.get("Item")
        return Batch.from_item(deserialize(item)) if item else None

    # --- creating and filling ----------------------------------------------------------------------------
    def create(
        self, batch_id: str, *, notify_url: str | None = None, owner: str | None = None, adopt_unowned: bool = False
    ) -> Batch:
        """A new, empty OPEN batch. The same call again (same notify_url and owner, still open) returns the
        existing record, so a client may retry; anything else raises ``BatchConflict`` or ``BatchNotOpen``."""
        self.reserve(batch_id, 0, notify_url=notify_url, owner=owner, strict_url=True, adopt_unowned=adopt_unowned)
        batch = self.get(batch_id)
        assert batch is not None  # batch records are never deleted once they hold anything
        return batch

    def reserve(
        self,
        batch_id: str,
        jobs: int,
        *,
        notify_url: str | None = None,
        owner: str | None = None,
        strict_url: bool = False,
        adopt_unowned: bool = False,
    ) -> Reservation:
        """Count ``jobs`` new jobs into an OPEN batch, creating it if needed (before the jobs are written).

        A request that names no notify_url joins the batch whatever its URL; one that names a URL must match the
        batch's (a URL is set when the batch is created, never changed). ``strict_url``: no URL must match none.
        ``adopt_unowned``: a batch recorded before owners existed joins ``owner`` (the admin's, runtime/api).
        """
        now = self.clock()
        sets = [
            "batch_state = if_not_exists(batch_state, :open)",
            "opened_at = if_not_exists(opened_at, :now)",
            "#total = if_not_exists(#total, :zero) + :n",
            "done = if_not_exists(done, :zero)",
            "succeeded = if_not_exists(succeeded, :zero)",
            "failed = if_not_exists(failed, :zero)",
        ]
        values: dict[str, Any] = {":open": str(BatchState.OPEN), ":now": now, ":zero": 0, ":n": jobs}
        condition = "attribute_not_exists(pk) OR (batch_state = :open"
        if notify_url is not None:
            sets.append("notify_url = if_not_exists(notify_url, :url)")
            values[":url"] = notify_url
            condition += " AND notify_url = :url"
        elif strict_url:
            condition += " AND attribute_not_exists(notify_url)"
        if owner is not None:
            sets.append("#owner = if_not_exists(#owner, :owner)")
            values[":owner"] = owner
            condition += (
                " AND (#owner = :owner OR attribute_not_exists(#owner))" if adopt_unowned else " AND #owner = :owner"
            )
        else:
            condition += " AND attribute_not_exists(#owner)"
        condition += ")"
        old = self._update_item(
            batch_id,
            "SET " + ", ".join(sets),
            values,
            condition=condition,
            names={"#total": "total", "#owner": "owner"},
            returns="ALL_OLD",
        )
        if old is not None:
            return Reservation(batch_id, jobs, created=not old)
        current = self.get(batch_id)
        if current is not None and current.state != BatchState.OPEN:
            raise BatchNotOpen(f"batch {batch_id} is {current.state.lower()}: it takes no more images", current)
        raise BatchConflict(f"batch {batch_id} was created with another notify_url or owner", current)

    def open_fresh(
        self, batch_id: str, jobs: int, *, notify_url: str | None = None, owner: str | None = None
    ) -> Reservation | None:
        """``reserve`` for an id the caller just drew at random: the new OPEN record written whole, in one
        conditional put (a put is one write like the update, but needs no update expression: the common case of a
        request without a batch id, made cheaper). None if the id exists after all (then ``reserve`` decides)."""
        item = _new_record(batch_id, BatchState.OPEN, self.clock(), total=jobs, notify_url=notify_url, owner=owner)
        return Reservation(batch_id, jobs, created=True) if self._put_new(item) else None

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Write a new batch record; False if one with its id exists (nothing is overwritten)."""
        try:
            self.client.put_item(
                TableName=self.table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def unreserve(self, reservation: Reservation) -> None:
        """Take back a reservation whose request was refused (its jobs were never kept). A batch the request
        created is removed again, unless another request joined it meanwhile: a refused request leaves nothing."""
        batch_id, jobs = reservation.batch_id, reservation.jobs
        if reservation.created:
            try:
                self.client.delete_item(
                    TableName=self.table,
                    Key=_key(batch_id),
                    ConditionExpression="#total = :n AND batch_state = :open",
                    ExpressionAttributeNames={"#total": "total"},
                    ExpressionAttributeValues=serialize({":n": jobs, ":open": str(BatchState.OPEN)}),
                )
                return
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
        if jobs:
            self._update(
                batch_id,
                "ADD #total :minus",
                {":minus": -jobs},
                condition="attribute_exists(pk)",
                names={"#total": "total"},
            )

    # --- lifecycle -----------------------------------------------------------------------------------------
    def seal(self, batch_id: str, *, settle_after_ms: int) -> Batch | None:
        """OPEN -> SEALED (idempotent: a sealed or completed batch is returned as it is); None: no such batch.

        A sealed batch goes into ``by_work`` as ``settle``, due after ``settle_after_ms``: if its counters then
        have not moved for that long, reconcile recounts it (``recount``)."""
        now = self.clock()
        sealed = self._update(
            batch_id,
            "SET batch_state = :sealed, sealed_at = :now, #work = :settle, work_due_at = :due",
            {
                ":sealed": str(BatchState.SEALED),
                ":open": str(BatchState.OPEN),
                ":now": now,
                ":settle": str(Work.SETTLE),
                ":due": now + settle_after_ms,
            },
            condition="batch_state = :open",
            names={"#work": "work"},
        )
        return sealed if sealed is not None else self.get(batch_id)

    def job_finished(self, batch_id: str, status: str) -> Batch | None:
        """Count one job that just became SUCCEEDED or FAILED; None when the batch has no record (a batch made
        before records existed) or is already completed (a count that arrives after a recount)."""
        column = "succeeded" if status == JobStatus.SUCCEEDED else "failed"
        return self._update(
            batch_id,
            f"ADD done :one, {column} :one SET counted_at = :now",
            {":one": 1, ":now": self.clock(), ":completed": str(BatchState.COMPLETED)},
            condition="attribute_exists(pk) AND batch_state <> :completed",
        )

    def try_complete(self, batch_id: str) -> Batch | None:
        """SEALED with every job counted -> COMPLETED; the record if this call made it so, else None.

        The completion also queues the notifications (``work = notify``, due now) and fixes the event id that
        the Batch Completed event and the webhook carry, so every retry and channel names the same event."""
        now = self.clock()
        return self._update(
            batch_id,
            "SET batch_state = :completed, completed_at = :now, event_id = :event, #work = :notify, work_due_at = :now",
            {
                ":completed": str(BatchState.COMPLETED),
                ":sealed": str(BatchState.SEALED),
                ":now": now,
                ":event": uuid.uuid4().hex,
                ":notify": str(Work.NOTIFY),
            },
            condition="batch_state = :sealed AND done >= #total",
            names={"#work": "work", "#total": "total"},
        )

    def recount(self, batch_id: str, counts: dict[str, int], *, counted_at: int | None) -> Batch | None:
        """Set the counters of a SEALED batch from an actual count of its jobs (by status): reconcile's repair for a
        count lost between a job's transition and ``job_finished``. ``counted_at`` is the record's value read
        before counting: a job counted meanwhile makes this a no-op (None), and the next pass counts again."""
        succeeded = counts.get(str(JobStatus.SUCCEEDED), 0)
        failed = counts.get(str(JobStatus.FAILED), 0)
        values: dict[str, Any] = {
            ":total": sum(counts.values()),
            ":done": succeeded + failed,
            ":ok": succeeded,
            ":failed": failed,
            ":now": self.clock(),
            ":sealed": str(BatchState.SEALED),
        }
        condition = "batch_state = :sealed AND "
        if counted_at is None:
            condition += "attribute_not_exists(counted_at)"
        else:
            condition += "counted_at = :seen"
            values[":seen"] = counted_at
        return self._update(
            batch_id,
            "SET #total = :total, done = :done, succeeded = :ok, failed = :failed, recounted_at = :now",
            values,
            condition=condition,
            names={"#total": "total"},
        )

    # --- S3 ingestion (docs/ingestion.md, docs/architecture.md D10) ----------------------------------------
    def create_ingesting(
        self,
        batch_id: str,
        *,
        source: str,
        source_kind: str,
        spec: dict[str, Any],
        notify_url: str | None = None,
        owner: str | None = None,
        inbox_name: str | None = None,
    ) -> Batch:
        """A new INGESTING batch with ``work = ingest`` due now. The same call again returns the record as it is
        (a client may retry); an existing batch of another source, URL or owner raises ``BatchConflict``."""
        now = self.clock()
        item = _new_record(batch_id, BatchState.INGESTING, now, total=0, notify_url=notify_url, owner=owner) | {
            "listed": 0,
            "skipped": 0,
            "source": source,
            "source_kind": source_kind,
            "ingest_spec": spec,
            "inbox_name": inbox_name,
            "work": str(Work.INGEST),
            "work_due_at": now,
        }
        if not self._put_new(item):
            current = self.get(batch_id)
            if current is None or (current.source, current.notify_url, current.owner) != (source, notify_url, owner):
                message = f"batch {batch_id} already exists with another source, notify_url or owner"
                raise BatchConflict(message, current) from None
            return current
        return Batch.from_item(deserialize(serialize(item)))

    def start_ingesting(
        self, batch_id: str, *, source: str, spec: dict[str, Any], inbox_name: str | None = None
    ) -> Batch | None:
        """OPEN -> INGESTING (a drop folder's ``_SEALED``: list the folder for what its events missed, then seal).
        Idempotent: an INGESTING batch is returned as it is; None when the batch is neither."""
        now = self.clock()
        started = self._update(
            batch_id,
            "SET batch_state = :ingesting, #source = :src, source_kind = :kind, ingest_spec = :spec,"
            " listed = if_not_exists(listed, :zero), skipped = if_not_exists(skipped, :zero),"
            " #work = :ingest, work_due_at = :now" + (", inbox_name = :inbox" if inbox_name else ""),
            {
                **({":inbox": inbox_name} if inbox_name else {}),
                ":ingesting": str(BatchState.INGESTING),
                ":open": str(BatchState.OPEN),
                ":src": source,
                ":kind": "prefix",
                ":spec": spec,
                ":zero": 0,
                ":ingest": str(Work.INGEST),
                ":now": now,
            },
            condition="batch_state = :open",
            names={"#work": "work", "#source": "source"},
        )
        if started is not None:
            return started
        current = self.get(batch_id)
        return current if current is not None and current.state == BatchState.INGESTING else None

    def claim_ingest(self, batch_id: str, holder: str, *, lease_ms: int) -> Batch | None:
        """Hold the batch's ingestion for ``lease_ms`` (renewed by every checkpoint); None when it is not due or
        another live run holds it. A run that died lets its lease run out, and the next run resumes."""
        return self._claim_work(batch_id, Work.INGEST, holder, lease_ms)

    def _claim_work(self, batch_id: str, work: Work, holder: str, lease_ms: int) -> Batch | None:
        """The lease both background runs take: ``<work>_holder`` until ``<work>_lease_until``, only while the batch
        is due for ``work`` and no live lease is held."""
        now = self.clock()
        return self._update(
            batch_id,
            f"SET {work}_holder = :me, {work}_lease_until = :until",
            {":me": holder, ":until": now + lease_ms, ":now": now, ":work": str(work)},
            condition=f"#work = :work AND (attribute_not_exists({work}_lease_until) OR {work}_lease_until < :now)",
            names={"#work": "work"},
        )

    def checkpoint(
        self,
        batch_id: str,
        holder: str,
        *,
        cursor: str,
        jobs: int,
        failed: int,
        listed: int,
        skipped: int,
        lease_ms: int,
    ) -> Batch | None:
        """Record a page as done: its jobs counted into ``total`` (``failed`` of them were refused at ingestion,
        so they count as finished too) and the cursor moved past it, in one write. None: the lease was lost."""
        now = self.clock()
        return self._update(
            batch_id,
            "SET ingest_cursor = :cursor, ingest_lease_until = :until, counted_at = :now"
            " ADD #total :jobs, done :failed, failed :failed, listed :listed, skipped :skipped",
            {
                ":cursor": cursor,
                ":until": now + lease_ms,
                ":now": now,
                ":jobs": jobs,
                ":failed": failed,
                ":listed": listed,
                ":skipped": skipped,
                ":me": holder,
                ":ingesting": str(BatchState.INGESTING),
            },
            condition="ingest_holder = :me AND batch_state = :ingesting",
            names={"#total": "total"},
        )

    def finish_ingesting(self, batch_id: str, holder: str, *, note: str | None, settle_after_ms: int) -> Batch | None:
        """INGESTING -> SEALED: every object is a job now; the batch completes like any sealed batch."""
        now = self.clock()
        values: dict[str, Any] = {
            ":sealed": str(BatchState.SEALED),
            ":ingesting": str(BatchState.INGESTING),
            ":now": now,
            ":settle": str(Work.SETTLE),
            ":due": now + settle_after_ms,
            ":me": holder,
        }
        expression = "SET batch_state = :sealed, sealed_at = :now, #work = :settle, work_due_at = :due"
        if note:
            values[":note"] = note
            expression += ", ingest_note = :note"
        return self._update(
            batch_id,
            expression + " REMOVE ingest_holder, ingest_lease_until",
            values,
            condition="ingest_holder = :me AND batch_state = :ingesting",
            names={"#work": "work"},
        )

    # --- background work (the by_work index) ---------------------------------------------------------------
    def due(self, work: Work, *, now: int, limit: int = 100) -> Iterator[str]:
        """Ids of batches with ``work`` due at or before ``now``, oldest first, at most ``limit``."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": schema.BY_WORK_INDEX,
            "KeyConditionExpression": "#work = :work AND work_due_at <= :now",
            "ExpressionAttributeNames": {"#work": "work"},
            "ExpressionAttributeValues": {":work": {"S": str(work)}, ":now": {"N": str(now)}},
            "Limit": min(limit, 500),
        }
        seen = 0
        while seen < limit:
            out = self.client.query(**kwargs)
            for item in out.get("Items", []):
                yield item[schema.TABLE_PARTITION_KEY]["S"].removeprefix(schema.BATCH_PK_PREFIX)
                seen += 1
                if seen >= limit:
                    return
            if not out.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def postpone(self, batch_id: str, work: Work, due_at: int) -> bool:
        """Move ``work`` on this batch to ``due_at`` (it stays in the index)."""
        return (
            self._update(
                batch_id,
                "SET work_due_at = :due",
                {":due": due_at, ":work": str(work)},
                condition="#work = :work",
                names={"#work": "work"},
            )
            is not None
        )

    def claim_notify(self, batch_id: str, holder: str, *, lease_ms: int) -> Batch | None:
        """Hold the batch's notifications for ``lease_ms``, so two notify runs (the triggered task and a reconcile
        pass) never deliver at once; None when nothing is due or another run holds them."""
        return self._claim_work(batch_id, Work.NOTIFY, holder, lease_ms)

    def update_notify(self, batch_id: str, holder: str, values: dict[str, Any]) -> Batch | None:
        """Record notification progress (export keys, events sent, webhook attempts) while holding the lease."""
        names = {f"#f{i}": k for i, k in enumerate(values)}
        sets = [f"#f{i} = :f{i}" for i in range(len(values))]
        vals = {f":f{i}": v for i, v in enumerate(values.values())}
        vals[":me"] = holder
        return self._update(batch_id, "SET " + ", ".join(sets), vals, condition="notify_holder = :me", names=names)

    def release_notify(self, batch_id: str, holder: str, *, next_due_at: int | None) -> Batch | None:
        """Let go of the lease: the notifications are finished (``next_due_at`` None: out of ``by_work``) or
        due again at ``next_due_at``."""
        if next_due_at is None:
            return self._update(
                batch_id,
                "REMOVE #work, work_due_at, notify_holder, notify_lease_until",
                {":me": holder},
                condition="notify_holder = :me",
                names={"#work": "work"},
            )
        return self._update(
            batch_id,
            "SET work_due_at = :due REMOVE notify_holder, notify_lease_until",
            {":me": holder, ":due": next_due_at},
            condition="notify_holder = :me",
        )
