"""The job table: DynamoDB is the source of truth for every job (docs/architecture.md D1).

Every state change is one conditional update, so two workers, two reconcilers or a retried request can race
and still leave exactly one outcome (docs/architecture.md D7c). Times are epoch milliseconds (``int``).

State machine (the job state machine, docs/architecture.md)::

    AWAITING_UPLOAD --submit--> QUEUED --claim--> RUNNING --complete--> SUCCEEDED
                                  ^   |              |  \\--fail (permanent)--> FAILED
                                  |   |              |
                                  +---|--release / lease expired, attempts < max--+
                                      |              \\--attempts >= max--> FAILED
                                      \\--older than job_max_age_s (reconcile)--> FAILED (expired)

A claim is an attempt: a worker claims a job only when it starts processing it (runtime/worker/batch.py), so
only a job's own attempts can fail it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Required, TypedDict, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from runtime.common import schema

log = logging.getLogger(__name__)


class Job(TypedDict, total=False):
    """A job item as every reader of the table gets it: the attribute list of docs/contracts.md ("Job table"),
    made executable (a test holds the two equal). Required keys are written by ``create``; the others appear and
    disappear with the transitions below (DynamoDB stores no nulls: an absent value is an absent key). Times are
    epoch milliseconds."""

    pk: Required[str]
    job_id: Required[str]
    batch_id: Required[str]
    status: Required[str]  # a JobStatus value
    created_at: Required[int]
    updated_at: Required[int]
    attempts: Required[int]
    enqueue_count: Required[int]
    input_key: Required[str]
    file_name: Required[str]
    model: Required[str]
    size_bytes: Required[int]
    enqueued_at: int
    lease_owner: str
    lease_expires_at: int
    image_format: str
    width: int
    height: int
    mm_per_pixel: float
    started_at: int
    finished_at: int
    result: dict[str, Any]
    mask_key: str
    overlay_key: str
    error: str
    error_class: str
    last_error: str
    input_etag: str
    input_bucket: str
    via: str
    owner: str
    lost_leases: int


# Called with the job item after each winning transition to SUCCEEDED or FAILED (runtime/common/progress.py).
TerminalHook = Callable[[Job], None]

# The DynamoDB actions of the job store, by the container whose code calls them. stacks/constructs/grants.py
# grants each container the union of the groups its code uses; the contract test (tests/contract) fails when a
# call is missing from them. Conditional writes need no ConditionCheckItem; nobody scans.
INTAKE_ACTIONS: Final = (  # the API
    "dynamodb:GetItem",  # get
    "dynamodb:PutItem",  # create
    "dynamodb:UpdateItem",  # submit_uploaded, fail_queued, mark_unsent
    "dynamodb:DeleteItem",  # discard_queued
    "dynamodb:Query",  # page_batch, iter_batch, batch_counts (by_batch)
)
WORKER_ACTIONS: Final = (
    "dynamodb:GetItem",  # get: why a job was skipped
    "dynamodb:BatchGetItem",  # get_many: a message's jobs, which released jobs to re-enqueue
    "dynamodb:UpdateItem",  # claim, renew_lease, complete, fail_running, release, mark_enqueued
)
RECONCILE_ACTIONS: Final = (  # the results task: reconcile, settle, export, report
    "dynamodb:UpdateItem",  # release_expired, fail_queued, fail_awaiting_upload, mark_redrive_unsent/_stale
    "dynamodb:Query",  # iter_status, count_status (by_status); iter_batch, batch_counts (by_batch)
)
INGEST_ACTIONS: Final = (  # the results task's ingester (runtime/results/ingest/)
    "dynamodb:PutItem",  # create: a drop-folder object's job (conditional)
    "dynamodb:BatchWriteItem",  # submit_new: a listed page's new jobs
    "dynamodb:BatchGetItem",  # get_many: which jobs of a resumed page exist
)


class JobStatus(StrEnum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


def is_crash_suspect(job: Mapping[str, Any]) -> bool:
    """A worker vanished while processing this job before: process it alone, so if it is what kills workers,
    no other job is in flight (and charged an attempt) when it does."""
    return int(job.get("lost_leases", 0)) > 0


_ser = TypeSerializer()
_de = TypeDeserializer()


def now_ms() -> int:
    return int(time.time() * 1000)


def _to_dynamo(value: Any) -> Any:
    """Floats become Decimal (DynamoDB has no float type); NaN/inf are refused by the caller's validation."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, set):
        return sorted(_from_dynamo(v) for v in value)
    return value


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_de.deserialize(v)) for k, v in item.items()}


def as_job(item: dict[str, Any]) -> Job:
    """A job item read from DynamoDB, typed: only job keys (``job#``) are read as jobs, and only this store
    writes them, so their attributes are those of ``Job``."""
    return cast(Job, deserialize(item))


def job_pk(job_id: str) -> str:
    return schema.JOB_PK_PREFIX + job_id


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


@dataclass(frozen=True)
class NewJob:
    """What the API knows about a job when it records it."""

    job_id: str
    batch_id: str
    input_key: str
    file_name: str
    model: str
    size_bytes: int = 0
    image_format: str | None = None
    width: int | None = None
    height: int | None = None
    mm_per_pixel: float | None = None
    # Ingested images are read in place (docs/ingestion.md): their bucket (None: ours), the ETag listed (the
    # worker reads that object only) and how the job was made ("listing" or "event"; None: an upload).
    input_bucket: str | None = None
    input_etag: str | None = None
    via: str | None = None
    owner: str | None = None  # the client whose key made the job (runtime/common/clients.py)


BATCH_WRITE_MAX = 25  # DynamoDB's limit per BatchWriteItem


def new_job_item(
    job: NewJob,
    status: JobStatus,
    now: int,
    *,
    enqueued: bool = False,
    error: str | None = None,
    error_class: str | None = None,
) -> dict[str, Any]:
    """The job table item of a new job (None values are left out when stored). ``enqueued``: the job is written
    as promised to the queue (``enqueued_at`` now, one send counted), for a writer that hands it to its sender
    right after the write (the API's micro-batcher, the ingester), so no write follows the send. A message lost
    in between (a sender killed) is re-driven by reconcile like any job enqueued and never claimed (D1); a send
    that fails is taken back with ``mark_unsent``."""
    item = {
        schema.TABLE_PARTITION_KEY: job_pk(job.job_id),
        "job_id": job.job_id,
        "batch_id": job.batch_id,
        "status": str(status),
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
        "enqueue_count": 1 if enqueued else 0,
        "enqueued_at": now if enqueued else None,
        "input_key": job.input_key,
        "input_bucket": job.input_bucket,
        "input_etag": job.input_etag,
        "via": job.via,
        "file_name": job.file_name,
        "model": job.model,
        "size_bytes": job.size_bytes,
        "image_format": job.image_format,
        "width": job.width,
        "height": job.height,
        "mm_per_pixel": job.mm_per_pixel,
        "owner": job.owner,
    }
    if status in TERMINAL:
        item.update({"finished_at": now, "error": (error or "")[:1000] or None, "error_class": error_class})
    return item


class JobStore:
    """All reads and writes of the job table go through here (API, worker and results alike)."""

    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        *,
        lease_seconds: int = 300,
        max_attempts: int = 3,
        clock: Any = now_ms,
        on_terminal: TerminalHook | None = None,
    ) -> None:
        self.client = dynamodb_client
        self.table = table_name
        self.lease_ms = lease_seconds * 1000
        self.max_attempts = max_attempts
        self.clock = clock
        if on_terminal is None:  # every store counts finished jobs into their batch (docs/architecture.md D9)
            from runtime.common.progress import BatchProgress  # it imports this module

            on_terminal = BatchProgress.count_only(dynamodb_client, table_name)
        self.on_terminal = on_terminal

    @classmethod
    def from_settings(
        cls, settings: Any, dynamodb_client: Any | None = None, *, on_terminal: TerminalHook | None = None
    ) -> JobStore:
        """A store for ``settings``; its terminal hook also sends job events when ``settings.event_bus`` is set."""
        from runtime.common.aws import client
        from runtime.common.progress import BatchProgress

        dynamodb_client = dynamodb_client or client("dynamodb", settings)
        return cls(
            dynamodb_client,
            settings.table,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            on_terminal=on_terminal or BatchProgress.for_settings(settings, dynamodb_client),
        )

    def _finished(self, job: Job) -> None:
        """Run the terminal hook for a transition this store won. Its failure never undoes the transition: a
        count it could not record is repaired by reconcile."""
        try:
            self.on_terminal(job)
        except Exception:
            log.exception("job %s: the batch could not be told it finished", job.get("job_id"))

    # --- low-level helpers ---------------------------------------------------------------------------
    def _update(
        self,
        job_id: str,
        set_values: dict[str, Any],
        condition: str,
        cond_values: dict[str, Any],
        remove: tuple[str, ...] = (),
        add: dict[str, int] | None = None,
    ) -> Job | None:
        """One conditional update; the new item, or None when the condition did not hold."""
        out = self._send_update(job_id, set_values, condition, cond_values, remove, add, "ALL_NEW")
        return None if out is None else as_job(out["Attributes"])

    def _changed(
        self,
        job_id: str,
        set_values: dict[str, Any],
        condition: str,
        cond_values: dict[str, Any],
        remove: tuple[str, ...] = (),
        add: dict[str, int] | None = None,
    ) -> bool:
        """One conditional update; whether the condition held. Most transitions need to know no more, and a job
        with its result is a large item to send back."""
        return self._send_update(job_id, set_values, condition, cond_values, remove, add, "NONE") is not None

    def _send_update(
        self,
        job_id: str,
        set_values: dict[str, Any],
        condition: str,
        cond_values: dict[str, Any],
        remove: tuple[str, ...],
        add: dict[str, int] | None,
        return_values: str,
    ) -> dict[str, Any] | None:
        """The UpdateItem response, or None when the condition did not hold."""
        # DynamoDB has no null worth storing: a None value means "this attribute is absent now".
        remove = (*remove, *(k for k, v in set_values.items() if v is None))
        set_values = {k: v for k, v in set_values.items() if v is not None}
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets = []
        for i, (k, v) in enumerate(set_values.items()):
            names[f"#s{i}"] = k
            values[f":s{i}"] = v
            sets.append(f"#s{i} = :s{i}")
        expr = "SET " + ", ".join(sets) if sets else ""
        if add:
            adds = []
            for i, (k, v) in enumerate(add.items()):
                names[f"#a{i}"] = k
                values[f":a{i}"] = v
                adds.append(f"#a{i} :a{i}")
            expr += " ADD " + ", ".join(adds)
        if remove:
            for i, k in enumerate(remove):
                names[f"#r{i}"] = k
            expr += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        names["#status"] = "status"
        for k, v in cond_values.items():
            values[k] = v
        try:
            out = self.client.update_item(
                TableName=self.table,
                Key={schema.TABLE_PARTITION_KEY: {"S": job_pk(job_id)}},
                UpdateExpression=expr.strip(),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues=return_values,
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise
        return dict(out)

    # --- create and read -----------------------------------------------------------------------------
    def create(self, job: NewJob, status: JobStatus = JobStatus.QUEUED, *, enqueued: bool = False) -> Job:
        """Record a new job; refuses to overwrite an existing one (``ConditionalCheckFailedException``)."""
        item = new_job_item(job, status, self.clock(), enqueued=enqueued)
        self.client.put_item(
            TableName=self.table,
            Item=serialize(item),
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
        )
        return cast(Job, {k: v for k, v in item.items() if v is not None})

    def submit_new(self, items: list[dict[str, Any]], *, pool: Any) -> list[Any]:
        """BatchWriteItem of ``new_job_item``s, 25 per call, sent side by side on ``pool`` and retrying unprocessed
        items with backoff; returns the calls' futures (each raises if its call fails for good), so a caller can
        write one page while it finishes the previous one. Unconditional: the caller knows these ids are not taken
        (the ingester, whose ids are derived and checked on resume: runtime/results/ingest/)."""
        return [
            pool.submit(self._write_chunk, items[i : i + BATCH_WRITE_MAX])
            for i in range(0, len(items), BATCH_WRITE_MAX)
        ]

    def _write_chunk(self, chunk: list[dict[str, Any]]) -> None:
        request = {self.table: [{"PutRequest": {"Item": serialize(item)}} for item in chunk]}
        for attempt in range(12):
            out = self.client.batch_write_item(RequestItems=request)
            request = out.get("UnprocessedItems") or {}
            if not request:
                return
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise RuntimeError(f"DynamoDB left {len(request.get(self.table, []))} job writes unprocessed after 12 tries")

    def get(self, job_id: str, *, consistent: bool = True) -> Job | None:
        out = self.client.get_item(
            TableName=self.table,
            Key={schema.TABLE_PARTITION_KEY: {"S": job_pk(job_id)}},
            ConsistentRead=consistent,
        )
        item = out.get("Item")
        return as_job(item) if item else None

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """BatchGetItem in chunks of 100, retrying unprocessed keys."""
        found: dict[str, Job] = {}
        ids = list(dict.fromkeys(job_ids))
        for i in range(0, len(ids), 100):
            keys = [{schema.TABLE_PARTITION_KEY: {"S": job_pk(j)}} for j in ids[i : i + 100]]
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(10):
                out = self.client.batch_get_item(RequestItems=request)
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = as_job(raw)
                    found[item["job_id"]] = item
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
        return found

    # --- transitions ---------------------------------------------------------------------------------
    def submit_uploaded(
        self,
        job_id: str,
        *,
        size_bytes: int,
        image_format: str,
        width: int,
        height: int,
        input_etag: str | None = None,
    ) -> bool:
        """AWAITING_UPLOAD -> QUEUED once the API has checked the presigned upload, promised to the queue as
        ``create(enqueued=True)`` is: the API hands the job to its micro-batcher right after this write.

        ``input_etag`` pins the object that was checked: the worker reads with ``IfMatch``, so an object replaced
        through a still-valid presigned URL fails the job instead of being processed unchecked.
        """
        now = self.clock()
        return self._changed(
            job_id,
            {
                "status": "QUEUED",
                "updated_at": now,
                "enqueued_at": now,
                "size_bytes": size_bytes,
                "image_format": image_format,
                "width": width,
                "height": height,
                "input_etag": input_etag,
            },
            "#status = :expected",
            {":expected": "AWAITING_UPLOAD"},
            add={"enqueue_count": 1},
        )

    def mark_unsent(self, job_id: str) -> bool:
        """Take back the promise of a send that failed (the API's micro-batcher): the job is "never enqueued"
        again, so reconcile re-drives it ``stuck_after_s`` after its last change whatever the queue's backlog,
        as it would a job whose send was never promised. Only a job still as its promise left it (``enqueued_at``
        is the time it became QUEUED) and never claimed: a send by the reconciler or a worker since stays
        recorded. ``updated_at`` is left alone, so the re-drive comes no later than it would have without the
        promise."""
        return self._changed(
            job_id,
            {},
            "#status = :queued AND enqueued_at = updated_at AND attempts = :zero",
            {":queued": "QUEUED", ":zero": 0},
            remove=("enqueued_at",),
            add={"enqueue_count": -1},
        )

    def mark_enqueued(self, job_id: str) -> bool:
        """Record that a message with this QUEUED job was sent (a worker handing jobs back)."""
        return self._mark_sent(job_id, "#status = :queued", {":queued": "QUEUED"})

    def mark_redrive_stale(self, job_id: str, *, enqueued_at: int) -> bool:
        """CAS for a QUEUED job last enqueued at ``enqueued_at`` and never claimed since: claim it for re-driving.
        Of two reconcilers re-driving the same job only one wins, so a job is never enqueued twice by them."""
        return self._mark_sent(
            job_id, "#status = :queued AND enqueued_at = :old", {":queued": "QUEUED", ":old": enqueued_at}
        )

    def mark_redrive_unsent(self, job_id: str) -> bool:
        """CAS for a QUEUED job that was never enqueued (no ``enqueued_at``): claim it for re-driving."""
        return self._mark_sent(job_id, "#status = :queued AND attribute_not_exists(enqueued_at)", {":queued": "QUEUED"})

    def _mark_sent(self, job_id: str, condition: str, cond_values: dict[str, Any]) -> bool:
        """``enqueued_at`` now and one more send counted, if ``condition`` holds (the job is about to be sent)."""
        return self._changed(job_id, {"enqueued_at": self.clock()}, condition, cond_values, add={"enqueue_count": 1})

    def claim(self, job_id: str, worker_id: str) -> Job | None:
        """QUEUED -> RUNNING with a lease for ``worker_id``, counting an attempt; None if someone else has it or it
        is done. Call it when processing starts, not before (a claim held idle would be charged like a real try)."""
        now = self.clock()
        return self._update(
            job_id,
            {
                "status": "RUNNING",
                "updated_at": now,
                "started_at": now,
                "lease_owner": worker_id,
                "lease_expires_at": now + self.lease_ms,
            },
            "#status = :queued",
            {":queued": "QUEUED"},
            add={"attempts": 1},
        )

    def renew_lease(self, job_id: str, worker_id: str) -> bool:
        now = self.clock()
        return self._changed(
            job_id,
            {"lease_expires_at": now + self.lease_ms},
            "#status = :running AND lease_owner = :me",
            {":running": "RUNNING", ":me": worker_id},
        )

    def complete(
        self,
        job_id: str,
        worker_id: str,
        *,
        result: dict[str, Any],
        mask_key: str | None,
        overlay_key: str | None,
    ) -> bool:
        """RUNNING -> SUCCEEDED, only while ``worker_id`` holds the lease."""
        now = self.clock()
        done = self._update(
            job_id,
            {
                "status": "SUCCEEDED",
                "updated_at": now,
                "finished_at": now,
                "result": result,
                "mask_key": mask_key,
                "overlay_key": overlay_key,
            },
            "#status = :running AND lease_owner = :me",
            {":running": "RUNNING", ":me": worker_id},
            remove=("lease_owner", "lease_expires_at", "error", "error_class"),
        )
        if done is not None:
            self._finished(done)
        return done is not None

    def discard_queued(self, job_id: str) -> bool:
        """Delete a QUEUED job the API never accepted. Used where a FAILED leftover would be wrong: in a batch the
        client fills over several requests, it would count as a failed image."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={schema.TABLE_PARTITION_KEY: {"S": job_pk(job_id)}},
                ConditionExpression="#status = :queued",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":queued": {"S": str(JobStatus.QUEUED)}},
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def fail_running(self, job_id: str, worker_id: str, reason: str, *, error_class: str) -> bool:
        """RUNNING -> FAILED with a human-readable reason, only while ``worker_id`` holds the lease (a worker's
        permanent error)."""
        return self._fail(
            job_id,
            reason,
            error_class,
            "#status = :running AND lease_owner = :me",
            {":running": "RUNNING", ":me": worker_id},
        )

    def fail_queued(self, job_id: str, reason: str, *, error_class: str) -> bool:
        """QUEUED -> FAILED: a job of a request the API did not accept, or one reconcile expires unprocessed."""
        return self._fail(job_id, reason, error_class, "#status = :queued", {":queued": "QUEUED"})

    def fail_awaiting_upload(self, job_id: str, reason: str, *, error_class: str) -> bool:
        """AWAITING_UPLOAD -> FAILED: a presigned upload that was never submitted (reconcile)."""
        return self._fail(job_id, reason, error_class, "#status = :awaiting", {":awaiting": "AWAITING_UPLOAD"})

    def _fail(self, job_id: str, reason: str, error_class: str, condition: str, cond_values: dict[str, Any]) -> bool:
        now = self.clock()
        failed = self._update(
            job_id,
            {
                "status": "FAILED",
                "updated_at": now,
                "finished_at": now,
                "error": reason[:1000],
                "error_class": error_class,
            },
            condition,
            cond_values,
            remove=("lease_owner", "lease_expires_at"),
        )
        if failed is not None:
            self._finished(failed)
        return failed is not None

    def release(self, job_id: str, worker_id: str, reason: str) -> JobStatus | None:
        """RUNNING -> QUEUED (not yet re-enqueued), or FAILED when attempts are used up, while ``worker_id`` holds
        the lease (a worker's transient error, or one handing back jobs it will not process).
        Returns the new status, or None if the job was not ours to release."""
        return self._release(job_id, reason, "lease_owner = :me", {":me": worker_id}, lost=None)

    def release_expired(self, job_id: str, reason: str) -> JobStatus | None:
        """RUNNING -> QUEUED or FAILED, as ``release``, for a job whose lease has expired (reconcile).

        The worker that held the job vanished while processing it (a worker claims a job only when it starts
        processing it, so this attempt was the job's own). That also counts in ``lost_leases``, which makes the
        next worker process the job on its own (``is_crash_suspect``), so a job that crashes workers cannot take
        other jobs' attempts with it.
        """
        return self._release(job_id, reason, "lease_expires_at < :now", {":now": self.clock()}, lost={"lost_leases": 1})

    def _release(
        self, job_id: str, reason: str, owner_cond: str, owner_vals: dict[str, Any], *, lost: dict[str, int] | None
    ) -> JobStatus | None:
        """Two conditional updates, at most one of which holds: FAILED once attempts are used up, else QUEUED."""
        now = self.clock()
        failed = self._update(
            job_id,
            {"status": "FAILED", "updated_at": now, "finished_at": now, "error_class": "gave_up"},
            f"#status = :running AND {owner_cond} AND attempts >= :max",
            {":running": "RUNNING", ":max": self.max_attempts, **owner_vals},
            remove=("lease_owner", "lease_expires_at"),
            add=lost,
        )
        if failed is not None:
            attempts = failed.get("attempts", self.max_attempts)
            error = f"gave up after {attempts} attempts: {reason}"[:1000]
            try:
                self._changed(job_id, {"error": error}, "#status = :failed", {":failed": "FAILED"})
            finally:
                self._finished({**failed, "error": error})
            return JobStatus.FAILED
        queued = self._changed(
            job_id,
            {"status": "QUEUED", "updated_at": now, "last_error": reason[:1000]},
            f"#status = :running AND {owner_cond}",
            {":running": "RUNNING", **owner_vals},
            remove=("lease_owner", "lease_expires_at", "enqueued_at"),
            add=lost,
        )
        return JobStatus.QUEUED if queued else None

    # --- queries -------------------------------------------------------------------------------------
    def page_batch(
        self, batch_id: str, *, limit: int = 100, cursor: dict[str, Any] | None = None
    ) -> tuple[list[Job], dict[str, Any] | None]:
        """One page of a batch's jobs in creation order, plus the cursor for the next page (or None)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": schema.BY_BATCH_INDEX,
            "KeyConditionExpression": "batch_id = :b",
            "ExpressionAttributeValues": {":b": {"S": batch_id}},
            "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = cursor
        out = self.client.query(**kwargs)
        return [as_job(i) for i in out.get("Items", [])], out.get("LastEvaluatedKey")

    def iter_batch(self, batch_id: str, *, page_size: int = 500) -> Iterator[Job]:
        """Stream a batch's jobs page by page: memory stays bounded however large the batch."""
        cursor: dict[str, Any] | None = None
        while True:
            items, cursor = self.page_batch(batch_id, limit=page_size, cursor=cursor)
            yield from items
            if not cursor:
                return

    def iter_status(
        self,
        status: JobStatus,
        *,
        updated_from: int | None = None,
        updated_to: int | None = None,
        page_size: int = 500,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Jobs in ``status`` whose ``updated_at`` is in [from, to], oldest first."""
        cond = "#status = :s"
        values: dict[str, Any] = {":s": {"S": str(status)}}
        if updated_from is not None and updated_to is not None:
            cond += " AND updated_at BETWEEN :a AND :b"
            values[":a"] = {"N": str(updated_from)}
            values[":b"] = {"N": str(updated_to)}
        elif updated_to is not None:
            cond += " AND updated_at <= :b"
            values[":b"] = {"N": str(updated_to)}
        elif updated_from is not None:
            cond += " AND updated_at >= :a"
            values[":a"] = {"N": str(updated_from)}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": schema.BY_STATUS_INDEX,
            "KeyConditionExpression": cond,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
            "Limit": page_size,
        }
        seen = 0
        while True:
            out = self.client.query(**kwargs)
            for raw in out.get("Items", []):
                yield as_job(raw)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not out.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def count_status(
        self, status: JobStatus, *, updated_to: int, updated_from: int | None = None, cap: int | None = 10_000
    ) -> int:
        """How many jobs are in ``status`` with ``updated_at`` in [``updated_from``, ``updated_to``] (no lower bound
        when None), counted up to ``cap`` (then ``cap``; None: exactly). A terminal job's ``updated_at`` is the
        moment it finished. A COUNT query on the status index: no items cross the network, and ``cap`` bounds the
        pages read.
        """
        if updated_from is None:
            condition, values = "#status = :s AND updated_at <= :b", {":b": {"N": str(updated_to)}}
        else:
            condition = "#status = :s AND updated_at BETWEEN :a AND :b"
            values = {":a": {"N": str(updated_from)}, ":b": {"N": str(updated_to)}}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": schema.BY_STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":s": {"S": str(status)}, **values},
            "Select": "COUNT",
        }
        count = 0
        while cap is None or count < cap:
            out = self.client.query(**kwargs)
            count += int(out.get("Count", 0))
            if not out.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return count if cap is None else min(count, cap)

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        counts = {str(s): 0 for s in JobStatus}
        cursor: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": schema.BY_BATCH_INDEX,
                "KeyConditionExpression": "batch_id = :b",
                "ExpressionAttributeValues": {":b": {"S": batch_id}},
                "ProjectionExpression": "#status",
                "ExpressionAttributeNames": {"#status": "status"},
            }
            if cursor:
                kwargs["ExclusiveStartKey"] = cursor
            out = self.client.query(**kwargs)
            for raw in out.get("Items", []):
                counts[raw["status"]["S"]] = counts.get(raw["status"]["S"], 0) + 1
            cursor = out.get("LastEvaluatedKey")
            if not cursor:
                return counts
