"""Re-drive stuck jobs, fail only those that truly cannot be processed, keep a worker alive while work waits
(docs/architecture.md D1, D7b, D8).

A worker that dies, a message that was never sent (an API task killed with jobs in its buffer, a failed send),
or a worker task that never started leaves jobs that nothing will pick up. The job table knows: this pass finds

1. RUNNING jobs whose lease expired: the worker processing them vanished. ``release_expired`` puts them back to QUEUED
   (or FAILED after ``max_attempts`` claims: a worker claims a job only when it starts processing it, so every
   claim is the job's own attempt), then they are re-enqueued, and are processed alone next time;
2. QUEUED jobs never enqueued (no ``enqueued_at``) whose last change is older than ``stuck_after_s``, and
   QUEUED jobs enqueued longer ago than ``stuck_after_s`` and still not claimed: re-enqueued, never charged,
   however often (an unclaimed job has not been tried, whatever happened to other jobs). An enqueued job may
   simply be waiting behind other messages, so while the jobs queue holds messages these are left alone until
   ``backlog_grace_s``: re-driving them would only add duplicates to the backlog. A QUEUED job older than
   ``job_max_age_s`` (far above any normal queueing) is FAILED as ``expired``, with its history in the reason.
   The API and the ingester write a job promised to the queue (``enqueued_at`` = the write that made it QUEUED)
   and write nothing after their send; a failed API send takes the promise back (``mark_unsent``), so only a
   job lost in a killed sender's buffer waits here as enqueued: late behind a backlog, never lost;
3. AWAITING_UPLOAD jobs older than the presigned URL expiry plus ``stuck_after_s``: FAILED;
4. objects under ``uploads/`` that have had no job for ``orphan_grace_s``: deleted (``runtime/results/orphans.py``);
5. sealed batches a lost count held back: recounted and completed, and the notifications that are due sent (D9).

Then, as the safety net of the warm workers: if work is queued (or was just re-driven) and no worker is live or
starting, it wakes one. With a metrics stream it also reports the live and starting workers, and counts the jobs
that became SUCCEEDED or FAILED since the last counted pass from the job table itself (``JobsSucceeded``,
``JobsFailed``): exact, where a worker's own ``ImagesProcessed`` misses a result written just before the worker
was killed.

Every write is a compare-and-set on the job (``mark_redrive_unsent``, ``mark_redrive_stale``,
``release_expired``, ``fail_queued``, ``fail_awaiting_upload``), and a job is sent only by the pass whose write
won, so two passes at once never enqueue a job twice and a second pass over the same state does nothing. A job
is marked before it is sent: if the send fails, the job looks enqueued-but-stale and the next pass after
``stuck_after_s`` re-drives it, so nothing is lost. Work per pass is bounded by ``max_jobs`` actions and
``max_scan`` items read per case.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import messages, metrics, schema
from runtime.common.aws import client
from runtime.common.jobs import Job, JobStatus, JobStore
from runtime.common.jobs import now_ms as wall_clock_ms
from runtime.common.settings import Settings
from runtime.common.workers import Waker
from runtime.results.orphans import sweep_orphans
from runtime.results.stuck import emit_stuck_queued

DEFAULT_MAX_JOBS = 1000
SQS_BATCH_ENTRIES = 10  # SendMessageBatch limit
# Jobs are counted up to this long before the pass: a result written with an earlier timestamp has landed by then.
COUNT_SETTLE_MS = 60_000
# The job table actions of count_finished's watermark item (stacks/constructs/grants.py grants them).
COUNT_ACTIONS: Final = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


@dataclass
class ReconcileReport:
    """What one pass did; ``to_json`` is what ``python -m runtime.results reconcile`` prints."""

    now_ms: int
    stuck_after_ms: int
    scanned: int = 0
    requeued: dict[str, list[str]] = field(
        default_factory=lambda: {"never_enqueued": [], "enqueue_stale": [], "lease_expired": []}
    )
    failed: dict[str, list[str]] = field(
        default_factory=lambda: {"gave_up": [], "expired": [], "upload_never_completed": []}
    )
    lost_races: int = 0  # another writer (worker, API, a second reconciler) changed the job first
    queue_backlog: int | None = None  # messages in the jobs queue when checked (None: not needed or unreadable)
    waiting_behind_backlog: int = 0  # enqueued jobs left alone because the queue still holds messages
    messages_sent: int = 0
    send_failed: list[str] = field(default_factory=list)  # marked but not sent: re-driven after stuck_after_s
    truncated: bool = False  # stopped at max_jobs or max_scan; run again
    live_workers: int | None = None  # workers holding a slot (None: no wake queue configured)
    starting_workers: int | None = None  # slots woken whose task has not started yet
    woke_slot: int | None = None  # the worker this pass woke, when work waited and none was live
    counted: dict[str, int] | None = None  # jobs finished since the last counted pass (with a metrics stream)
    # Sealed batches recounted and completed, completed batches notified (docs/architecture.md D9).
    batches: dict[str, Any] = field(default_factory=dict)
    orphans: dict[str, Any] | None = None  # uploads/ objects without a job, deleted (runtime/results/orphans.py)

    @property
    def actions(self) -> int:
        return sum(len(v) for v in self.requeued.values()) + sum(len(v) for v in self.failed.values())

    @property
    def requeued_ids(self) -> list[str]:
        return [j for ids in self.requeued.values() for j in ids]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = {
            **{f"requeued_{k}": len(v) for k, v in self.requeued.items()},
            **{f"failed_{k}": len(v) for k, v in self.failed.items()},
            "orphans_deleted": (self.orphans or {}).get("deleted", 0),
        }
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class _Pass:
    """State of one reconcile pass: the frozen clock, the budgets and the ids waiting to be sent."""

    def __init__(self, settings: Settings, store: JobStore, sqs: Any, now: int, max_jobs: int, max_scan: int) -> None:
        self.settings = settings
        self.store = store
        self.sqs = sqs
        self.max_jobs = max_jobs
        self.max_scan = max_scan
        self.report = ReconcileReport(now_ms=now, stuck_after_ms=settings.stuck_after_s * 1000)
        self.per_message = max(1, min(settings.batch_max_jobs, messages.max_job_ids_per_message()))
        self.pending: list[str] = []

    def scan(self, status: JobStatus, updated_to: int) -> Iterator[Job]:
        """Candidates of one case, oldest first; each case has its own read budget so none starves another."""
        jobs = self.store.iter_status(status, updated_to=updated_to, page_size=min(500, self.max_scan))
        for read, job in enumerate(jobs):
            if self.report.actions >= self.max_jobs or read >= self.max_scan:
                self.report.truncated = True
                return
            self.report.scanned += 1
            yield job

    def requeue(self, reason: str, job_id: str) -> None:
        self.report.requeued[reason].append(job_id)
        self.pending.append(job_id)
        if len(self.pending) >= self.per_message * SQS_BATCH_ENTRIES:
            self.flush()

    def flush(self) -> None:
        """Send pending ids, ``per_message`` per message and ten messages per call."""
        batch = messages.chunk(self.pending, self.per_message)
        self.pending = []
        for i in range(0, len(batch), SQS_BATCH_ENTRIES):
            group = batch[i : i + SQS_BATCH_ENTRIES]
            entries = [{"Id": str(n), "MessageBody": m.to_body()} for n, m in enumerate(group)]
            try:
                out = self.sqs.send_message_batch(QueueUrl=self.settings.queue_url, Entries=entries)
            except (BotoCoreError, ClientError):  # the jobs stay marked; the next pass re-drives them
                self.report.send_failed.extend(j for m in group for j in m.job_ids)
                continue
            self.report.messages_sent += len(out.get("Successful", []))
            for failure in out.get("Failed", []):
                self.report.send_failed.extend(group[int(failure["Id"])].job_ids)

    def queue_has_backlog(self) -> bool:
        """True while the jobs queue holds messages (checked once per pass); unknown counts as a backlog."""
        if self.report.queue_backlog is None:
            try:
                attrs = self.sqs.get_queue_attributes(
                    QueueUrl=self.settings.queue_url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
            except (BotoCoreError, ClientError):
                return True
            self.report.queue_backlog = sum(int(v) for v in attrs.values())
        return self.report.queue_backlog > 0

    # --- the three cases -------------------------------------------------------------------------------
    def expired_leases(self) -> None:
        now = self.report.now_ms
        # updated_at of a RUNNING job is its claim time and a lease runs at least lease_ms from the claim, so
        # only jobs claimed before now - lease_ms can have expired (every container reads the same setting).
        for job in self.scan(JobStatus.RUNNING, updated_to=now - self.store.lease_ms):
            if job.get("lease_expires_at") is None or job["lease_expires_at"] >= now:
                continue
            job_id = job["job_id"]
            new_status = self.store.release_expired(job_id, "lease expired")
            if new_status is JobStatus.FAILED:
                self.report.failed["gave_up"].append(job_id)
            elif new_status is JobStatus.QUEUED and self.store.mark_redrive_unsent(job_id):
                self.requeue("lease_expired", job_id)
            else:
                self.report.lost_races += 1

    def stale_queued(self) -> None:
        now, threshold = self.report.now_ms, self.report.stuck_after_ms
        max_age_ms = self.settings.job_max_age_s * 1000
        # A QUEUED job is enqueued (or promised) no earlier than it became QUEUED (enqueued_at >= updated_at), so
        # every stale job, never sent or sent long ago, has updated_at <= now - threshold: one index range finds both.
        for job in self.scan(JobStatus.QUEUED, updated_to=now - threshold):
            if int(job.get("created_at", now)) < now - max_age_ms:
                self.expire(job, max_age_ms)
                continue
            enqueued_at = job.get("enqueued_at")
            if enqueued_at is not None and enqueued_at > now - threshold:
                continue  # enqueued recently: a worker may still pick it up
            if (
                enqueued_at is not None
                and enqueued_at > now - self.settings.backlog_grace_s * 1000
                and self.queue_has_backlog()
            ):
                self.report.waiting_behind_backlog += 1  # its message may still be in the queue
                continue
            job_id = job["job_id"]
            if enqueued_at is None:
                if self.store.mark_redrive_unsent(job_id):
                    self.requeue("never_enqueued", job_id)
                else:
                    self.report.lost_races += 1
            elif self.store.mark_redrive_stale(job_id, enqueued_at=enqueued_at):
                self.requeue("enqueue_stale", job_id)
            else:
                self.report.lost_races += 1

    def expire(self, job: Job, max_age_ms: int) -> None:
        """The one way an unprocessed job fails: far older than any queue should make it wait."""
        attempts, enqueues = int(job.get("attempts", 0)), int(job.get("enqueue_count", 0))
        reason = (
            f"not processed within {max_age_ms / 3_600_000:g} h of its upload ({attempts} attempt(s), sent to the "
            f"queue {enqueues} time(s){'; last error: ' + str(job['last_error']) if job.get('last_error') else ''}); "
            "no worker could take it: check that worker tasks start"
        )
        if self.store.fail_queued(job["job_id"], reason, error_class="expired"):
            self.report.failed["expired"].append(job["job_id"])
        else:
            self.report.lost_races += 1

    def queue_depth(self) -> int:
        self.queue_has_backlog()
        return self.report.queue_backlog if self.report.queue_backlog is not None else 1

    # --- the warm workers' safety net ------------------------------------------------------------------------
    def keep_a_worker(self, waker: Waker | None, out: IO[str]) -> None:
        if waker is None or not waker.enabled:
            return
        slots = waker.slots.read()
        now = self.report.now_ms
        live = [s for s in slots.values() if s.live(now)]
        self.report.live_workers = sum(1 for s in live if s.state == "running")
        self.report.starting_workers = len(live) - self.report.live_workers
        self.emit(
            out,
            {
                metrics.LIVE_WORKERS: self.report.live_workers,
                metrics.STARTING_WORKERS: len(live) - self.report.live_workers,
            },
        )
        if live or not (self.report.requeued_ids or self.queue_depth() > 0):
            return
        self.report.woke_slot = waker.wake()

    def emit(self, out: IO[str], values: dict[str, float]) -> None:
        metrics.emit(
            values,
            {metrics.SERVICE_DIMENSION: metrics.RESULTS_SERVICE},
            namespace=self.settings.metrics_namespace,
            stream=out,
        )

    # --- exact counts -------------------------------------------------------------------------------------
    def count_finished(self, out: IO[str]) -> None:
        """Count jobs that became SUCCEEDED or FAILED in (last counted, now - settle], exactly once across
        passes: the window's end is claimed with a conditional write, so two passes never count it twice."""
        through = self.report.now_ms - COUNT_SETTLE_MS
        key = {schema.TABLE_PARTITION_KEY: {"S": schema.METRICS_WATERMARK_PK}}
        item = self.store.client.get_item(TableName=self.store.table, Key=key, ConsistentRead=True).get("Item")
        try:
            if item is None:  # the first pass starts the count; it has no window of its own
                self.store.client.put_item(
                    TableName=self.store.table,
                    Item={**key, "through_ms": {"N": str(through)}},
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
                )
                return
            since = int(item["through_ms"]["N"])
            if through <= since:
                return
            self.store.client.update_item(
                TableName=self.store.table,
                Key=key,
                UpdateExpression="SET through_ms = :new",
                ConditionExpression="through_ms = :old",
                ExpressionAttributeValues={":new": {"N": str(through)}, ":old": {"N": str(since)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return  # another pass counted this window
            raise
        counted = {
            str(status): self.store.count_status(status, updated_from=since + 1, updated_to=through)
            for status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        }
        self.report.counted = counted
        self.emit(out, {metrics.JOBS_SUCCEEDED: counted["SUCCEEDED"], metrics.JOBS_FAILED: counted["FAILED"]})

    def abandoned_uploads(self) -> None:
        cutoff = self.report.now_ms - self.settings.presign_expiry_s * 1000 - self.report.stuck_after_ms
        for job in self.scan(JobStatus.AWAITING_UPLOAD, updated_to=cutoff):
            job_id = job["job_id"]
            if self.store.fail_awaiting_upload(job_id, "upload never completed", error_class="upload_never_completed"):
                self.report.failed["upload_never_completed"].append(job_id)
            else:
                self.report.lost_races += 1


def reconcile_once(
    settings: Settings,
    *,
    now_ms: int | None = None,
    max_jobs: int = DEFAULT_MAX_JOBS,
    max_scan: int | None = None,
    store: JobStore | None = None,
    sqs: Any | None = None,
    metrics_stream: IO[str] | None = None,
) -> ReconcileReport:
    """One bounded, idempotent pass. ``now_ms`` fixes the clock for every check and write (tests, emulators).

    ``metrics_stream`` (the results task passes stderr) receives the pass's EMF metrics; without one the pass
    emits only ``JobsQueuedTooLong`` (to stderr) and does not count finished jobs (the local stack has no
    CloudWatch).
    """
    if not settings.queue_url:
        raise ValueError("SEGSCALE_QUEUE_URL is not set: reconcile has nowhere to re-enqueue jobs")
    if max_jobs <= 0:
        raise ValueError("max_jobs must be positive")
    now = wall_clock_ms() if now_ms is None else int(now_ms)
    base = store or JobStore.from_settings(settings)
    # A store of our own whose clock is frozen at ``now``: lease checks and the times we write agree.
    frozen = JobStore(
        base.client,
        base.table,
        lease_seconds=base.lease_ms // 1000,
        max_attempts=base.max_attempts,
        clock=lambda: now,
        on_terminal=base.on_terminal,
    )
    emit_stuck_queued(settings, frozen, now, stream=metrics_stream)  # what this pass found, before it acts
    sqs = sqs or client("sqs", settings)
    out = metrics_stream if metrics_stream is not None else io.StringIO()
    work = _Pass(settings, frozen, sqs, now, max_jobs, max_scan or 10 * max_jobs)
    work.expired_leases()
    work.stale_queued()
    work.abandoned_uploads()
    work.flush()
    waker = None
    if settings.wake_queue_url:
        waker = Waker.from_settings(
            settings,
            by="reconciler",
            service=metrics.RESULTS_SERVICE,
            sqs=sqs,
            dynamodb=base.client,
            metrics_stream=out,
            clock=lambda: now,
        )
    work.keep_a_worker(waker, out)
    if metrics_stream is not None:
        work.count_finished(out)
    work.report.orphans = sweep_orphans(settings, now_ms=now, dynamodb=base.client).to_dict()
    work.report.batches = batch_pass(settings, frozen, now)  # last: it may wait on webhooks
    return work.report


def batch_pass(settings: Settings, store: JobStore, now: int) -> dict[str, Any]:
    """Complete sealed batches a lost count held back, then send the notifications that are due."""
    from runtime.results.ingest.due import ingest_everything_due
    from runtime.results.notify import notify_due
    from runtime.results.settle import settle_for

    settled = settle_for(store, now=now, stuck_after_ms=settings.stuck_after_s * 1000)
    notified = notify_due(settings, jobs=store)
    return {
        "ingested": ingest_everything_due(settings),  # D10: resume ingestions that died, drain the drop folder
        "recounted": settled.recounted,
        "completed": settled.completed,
        "notified": [o.to_dict() for o in notified if o.claimed],
    }
