"""The ingester: an INGESTING batch's source becomes jobs, page by page, resumable (docs/ingestion.md, D10).

For each page: job items are written with ``BatchWriteItem`` (25 per call, several calls side by side), their ids
sent to the jobs queue (``enqueue.send_jobs``), then one checkpoint on the batch record counts the page into
``total`` and moves the cursor past it. A run holds a lease on the batch, renewed by every checkpoint; a run that
dies lets it expire and the next run (the bus's rule retried, or any reconcile pass) resumes at the cursor.

A listing's pages overlap: the next page's writes go out while a page is sent and checkpointed, so the
DynamoDB writes never wait for the queue or the checkpoint.

No duplicate and no missing job after a crash at any point: ids are derived from batch, bucket, key and ETag, so
the pages a dead run was writing past its cursor (two at most, with the overlap) are read again into the same ids;
those pages are checked with ``BatchGetItem`` first, their jobs already written are kept (re-sent if still queued,
never rewritten) and counted once.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import metrics
from runtime.common.aws import client, listing_client
from runtime.common.batches import Batch, BatchState, BatchStore, Work
from runtime.common.jobs import JobStatus, JobStore, NewJob, new_job_item, now_ms
from runtime.common.progress import BatchProgress
from runtime.common.settings import Settings
from runtime.common.sources import (
    DEFAULT_SUFFIXES,
    Source,
    SourceError,
    SourceKind,
    allowed,
    job_id_for,
    parse_allow_list,
    parse_source,
)
from runtime.common.workers import Waker
from runtime.results.ingest.enqueue import send_jobs
from runtime.results.ingest.pages import Entry, Page, manifest_pages, prefix_pages

log = logging.getLogger(__name__)

WAKE_CHECK_S = 10.0  # how often a long ingestion looks for a live worker

LEASE_MS = 5 * 60 * 1000
WRITERS = 8  # BatchWriteItem calls in flight
PAGES_AHEAD = 2  # pages a run may have written past its last checkpoint (one being finished, the next being written)
VIA_LISTING = "listing"
VIA_EVENT = "event"
INGEST_FAILED = "ingest_refused"  # the error_class of a job the ingester made FAILED (never read by a worker)


@dataclass
class IngestOutcome:
    """What one run did for one batch (printed by ``python -m runtime.results ingest``)."""

    batch_id: str
    claimed: bool = False
    pages: int = 0
    jobs: int = 0
    failed: int = 0
    listed: int = 0
    skipped: int = 0
    resumed_from: str | None = None
    finished: bool = False
    completed: bool = False
    note: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _PageJobs:
    items: list[dict[str, Any]] = field(default_factory=list)  # to write
    send: list[str] = field(default_factory=list)  # ids to enqueue
    counted: int = 0  # jobs this page adds to the batch's total
    failed: int = 0  # of which refused here (FAILED, counted as finished)
    duplicates: int = 0


@dataclass
class _Writing:
    """A page whose jobs are being written: the futures of its ``BatchWriteItem`` calls."""

    page: Page
    jobs: _PageJobs
    futures: list[Any]

    def wait(self) -> None:
        for future in self.futures:
            future.result()


class Ingester:
    def __init__(
        self,
        settings: Settings,
        *,
        s3: Any = None,
        dynamodb: Any = None,
        sqs: Any = None,
        holder: str | None = None,
        lease_ms: int = LEASE_MS,
        page_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.s3 = s3 or listing_client(settings)  # lists and reads manifests; never reads a timestamp
        ddb = dynamodb or client("dynamodb", settings)
        self.sqs = sqs or client("sqs", settings)
        self.store = JobStore.from_settings(settings, ddb)
        self.batches = BatchStore(ddb, settings.table)
        self.holder = holder or uuid.uuid4().hex
        self.lease_ms = lease_ms
        self.page_size = page_size  # keys per listing page / lines per manifest page: one checkpoint each
        self.allow = parse_allow_list(settings.ingest_sources)
        self.waker = (
            Waker.from_settings(  # EMF on stderr: stdout is the CLI's when the local stack runs this in-process
                settings,
                by="ingester",
                service=metrics.RESULTS_SERVICE,
                sqs=self.sqs,
                dynamodb=ddb,
                metrics_stream=sys.stderr,
            )
        )
        self._wake_checked_at: float | None = None

    def enqueue(self, job_ids: list[str]) -> None:
        """Send jobs to the jobs queue, then make sure a worker is live or starting (D8): the pipe starts workers
        only for wake messages, so work sent without one would wait for the reconciler's safety net."""
        send_jobs(self.sqs, self.settings.queue_url, job_ids, max_jobs=self.settings.batch_max_jobs)
        now = time.monotonic()
        if not self.waker.enabled or (self._wake_checked_at is not None and now - self._wake_checked_at < WAKE_CHECK_S):
            return  # a live worker wakes more as the backlog grows; one check per interval is enough from here
        try:
            live, woken = self.waker.ensure_worker()
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "worker check failed; reconcile will wake one",
                extra={"event": "wake_check_failed", "error": str(exc)[:300]},
            )
            return
        if live or woken is not None:
            self._wake_checked_at = now

    # --- entry points ------------------------------------------------------------------------------------
    def run(self, batch_id: str, *, max_pages: int | None = None) -> IngestOutcome:
        """Ingest ``batch_id`` from its cursor to the end (``max_pages``: stop early, as a killed run would)."""
        outcome = IngestOutcome(batch_id)
        batch = self.batches.claim_ingest(batch_id, self.holder, lease_ms=self.lease_ms)
        if batch is None:
            return outcome
        outcome.claimed = True
        outcome.resumed_from = batch.ingest_cursor
        try:
            self._ingest(batch, outcome, max_pages)
        except SourceError as exc:  # the source itself is unusable: the batch ends with what it has, and why
            outcome.error = str(exc)
            self._finish(batch_id, outcome, f"ingestion stopped: {exc}")
        return outcome

    # --- the work --------------------------------------------------------------------------------------------
    def _ingest(self, batch: Batch, outcome: IngestOutcome, max_pages: int | None) -> None:
        """Page by page. A listing's pages overlap: page n+1's jobs are written while page n's are sent and
        checkpointed, so a dead run may have written up to ``PAGES_AHEAD`` pages past its cursor, and a resumed run
        checks that many. A manifest's pages (which may repeat a key across pages) and a drop folder's (checked
        against the jobs its events made) are checked against the table, so each is finished before the next."""
        assert batch.source is not None
        source = parse_source(batch.source, manifest=batch.source_kind == SourceKind.MANIFEST)
        spec = batch.ingest_spec or {}
        inbox = batch.inbox_name is not None
        always_check = inbox or source.kind == SourceKind.MANIFEST
        overlap = not always_check
        # A page finished before the next is written leaves at most one page written past the cursor.
        to_recheck = (PAGES_AHEAD if overlap else 1) if batch.ingest_cursor is not None else 0
        total_listed = batch.listed
        limit = self.settings.ingest_max_objects
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="ingest-write") as pool:
            pending: _Writing | None = None
            for page in prefetched(self._pages(source, batch.ingest_cursor, spec)):
                recount = to_recheck > 0 or inbox
                to_recheck -= 1
                jobs = self._jobs(batch, source, page, spec, check_existing=recount or always_check, recount=recount)
                writing = _Writing(page, jobs, self.store.submit_new(jobs.items, pool=pool))
                if pending is not None and not self._settle(batch, pending, outcome, max_pages):
                    writing.wait()  # as a run killed here would leave them: written, not counted
                    return
                total_listed += page.listed
                pending = writing
                if not overlap or total_listed >= limit:  # nothing may be written after this page until it is done
                    pending = None
                    if not self._settle(batch, writing, outcome, max_pages):
                        return
                if total_listed >= limit:
                    self._finish(batch.batch_id, outcome, f"stopped after {total_listed:,} objects (the limit)")
                    return
            if pending is not None and not self._settle(batch, pending, outcome, max_pages):
                return
        self._finish(batch.batch_id, outcome, None)

    def _settle(self, batch: Batch, writing: _Writing, outcome: IngestOutcome, max_pages: int | None) -> bool:
        """Wait for a page's writes, send its jobs, checkpoint it; False: stop here (the lease was lost, or
        ``max_pages`` pages are done)."""
        writing.wait()
        page, jobs = writing.page, writing.jobs
        if jobs.send:
            self.enqueue(jobs.send)
        saved = self.batches.checkpoint(
            batch.batch_id,
            self.holder,
            cursor=page.cursor,
            jobs=jobs.counted,
            failed=jobs.failed,
            listed=page.listed,
            skipped=page.skipped + jobs.duplicates,
            lease_ms=self.lease_ms,
        )
        if saved is None:
            outcome.error = "the lease on this batch's ingestion was lost; another run continues it"
            return False
        outcome.pages += 1
        outcome.jobs += jobs.counted
        outcome.failed += jobs.failed
        outcome.listed += page.listed
        outcome.skipped += page.skipped + jobs.duplicates
        return max_pages is None or outcome.pages < max_pages

    def _pages(self, source: Source, cursor: str | None, spec: dict[str, Any]) -> Iterator[Page]:
        if source.kind == SourceKind.MANIFEST:
            return manifest_pages(self.s3, source, cursor=cursor, page_lines=self.page_size)
        suffixes = tuple(spec.get("suffixes") or DEFAULT_SUFFIXES)
        return prefix_pages(self.s3, source, start_after=cursor, suffixes=suffixes, page_keys=self.page_size)

    def _jobs(
        self,
        batch: Batch,
        source: Source,
        page: Page,
        spec: dict[str, Any],
        *,
        check_existing: bool,
        recount: bool,
    ) -> _PageJobs:
        """The page's new job items; with ``check_existing`` those already in the table are not rewritten (a
        resumed page: counted once here if this listing made them, ``recount``; a manifest's repeated key: a
        duplicate)."""
        now = now_ms()
        out = _PageJobs()
        by_id: dict[str, tuple[NewJob, str | None]] = {}
        for entry in page.entries:
            job, error = self._job(batch, source, entry, spec)
            if job.job_id in by_id:
                out.duplicates += 1
                continue
            by_id[job.job_id] = (job, error)
        existing = self.store.get_many(list(by_id)) if check_existing and by_id else {}
        for job_id, (job, error) in by_id.items():
            old = existing.get(job_id)
            if old is not None:
                if recount and old.get("via") == VIA_LISTING:
                    out.counted += 1
                    if old.get("error_class") == INGEST_FAILED:
                        out.failed += 1
                    elif old.get("status") == JobStatus.QUEUED:
                        out.send.append(job_id)
                else:
                    out.duplicates += 1
                continue
            out.counted += 1
            if error is not None:
                out.failed += 1
                item = new_job_item(job, JobStatus.FAILED, now, error=error, error_class=INGEST_FAILED)
            else:
                out.send.append(job_id)
                item = new_job_item(job, JobStatus.QUEUED, now, enqueued=True)
            out.items.append(item)
        return out

    def _job(self, batch: Batch, source: Source, entry: Entry, spec: dict[str, Any]) -> tuple[NewJob, str | None]:
        """The job for one entry, and why it is refused here (None: it goes to a worker)."""
        max_bytes = int(spec.get("max_bytes") or self.settings.max_upload_bytes)
        if entry.error is not None:  # a manifest line: its id is its line's
            job_id = job_id_for(batch.batch_id, source.bucket, source.key, f"line {entry.line}")
            name = entry.key[:200] or f"line {entry.line}"
            return self._new(batch, job_id, source.bucket, source.key, name, spec, None, 0), entry.error
        version = entry.etag or ""
        job_id = job_id_for(batch.batch_id, entry.bucket, entry.key, version)
        name = entry.key.rsplit("/", 1)[-1]
        job = self._new(batch, job_id, entry.bucket, entry.key, name, spec, entry.etag, entry.size)
        if not self._readable(entry.bucket, entry.key, batch):
            return job, f"s3://{entry.bucket}/{entry.key} is outside the allowed sources; nothing there can be read"
        if entry.size is not None and entry.size > max_bytes:
            return job, f"the object is {entry.size:,} bytes, over the limit of {max_bytes:,} bytes"
        if entry.size == 0:
            return job, "the object is empty (0 bytes): not an image"
        return job, None

    def _readable(self, bucket: str, key: str, batch: Batch) -> bool:
        if batch.inbox_name is not None and bucket == self.settings.bucket:
            return True
        return allowed(bucket, key, self.allow)

    @staticmethod
    def _new(
        batch: Batch,
        job_id: str,
        bucket: str,
        key: str,
        name: str,
        spec: dict[str, Any],
        etag: str | None,
        size: int | None,
    ) -> NewJob:
        return NewJob(
            job_id=job_id,
            batch_id=batch.batch_id,
            input_key=key,
            input_bucket=bucket,
            input_etag=etag or None,
            via=VIA_LISTING,
            file_name=name,
            model=str(spec.get("model")),
            size_bytes=int(size or 0),
            mm_per_pixel=spec.get("mm_per_pixel"),
        )

    def _finish(self, batch_id: str, outcome: IngestOutcome, note: str | None) -> None:
        current = self.batches.get(batch_id)
        if note is None and current is not None and current.total == 0:
            note = (
                f"no images: the source holds no objects whose names end in the suffixes ({current.skipped:,} "
                "other objects skipped)"
                if current.skipped
                else "no images: the source holds no objects"
            )
        finished = self.batches.finish_ingesting(
            batch_id, self.holder, note=note, settle_after_ms=self.settings.stuck_after_s * 1000
        )
        if finished is None:
            return
        outcome.finished = True
        outcome.note = note
        if finished.ready_to_complete:
            outcome.completed = BatchProgress.for_settings(self.settings, self.batches.client).complete(batch_id)
        log.info("batch ingested", extra={"event": "batch_ingested", "batch_id": batch_id, **outcome.to_dict()})


def prefetched(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """``pages``, read ahead on a thread: the next listing call overlaps this page's writes (a listing page and a
    page's writes take about as long, so this roughly halves a run). An error while listing is raised here, in
    order; a consumer that stops early leaves the reader blocked on a full queue of a daemon thread, nothing more."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)

    def read() -> None:
        try:
            for page in pages:
                box.put(("page", page))
        except BaseException as exc:
            box.put(("error", exc))
        else:
            box.put(("end", None))

    threading.Thread(target=read, name="ingest-list", daemon=True).start()
    while True:
        kind, value = box.get()
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def ingest_batch(settings: Settings, batch_id: str) -> IngestOutcome:
    return Ingester(settings).run(batch_id)


def ingest_due(settings: Settings, *, now: int | None = None, limit: int = 20) -> list[IngestOutcome]:
    """Every batch whose ingestion is due and not held by a live run: new ones whose start event was lost, and
    runs that died (reconcile's backstop, D10)."""
    ingester = Ingester(settings)
    due = list(ingester.batches.due(Work.INGEST, now=now_ms() if now is None else now, limit=limit))
    outcomes = []
    for batch_id in due:
        batch = ingester.batches.get(batch_id)
        if batch is not None and batch.state == BatchState.INGESTING:
            outcomes.append(ingester.run(batch_id))
    return outcomes
