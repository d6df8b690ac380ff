"""Process one batch message: claim, download, infer, upload, record, and never lose a job (D1, job state machine).

Pipeline: an I/O thread pool downloads the images of the next few jobs (and checks their headers) without
claiming them; the calling thread claims each job only when it starts processing it, then decodes it and runs
inference (one onnxruntime session per model uses all cores); the pool renders and uploads the results and writes
them to DynamoDB. A claim is the job's attempt (``attempts + 1``), so a worker that dies costs an attempt only to
the jobs it was really processing, never to the ones it had merely downloaded. A job whose earlier worker vanished
while processing it (``jobs.is_crash_suspect``) is processed alone, with nothing else in flight: if it is the
image that kills workers, it takes no other job's attempt with it. A lease keeper renews the leases of the jobs
in flight. On ``stop`` (SIGTERM) the worker claims nothing more, finishes the image in hand and the results
already being written, and hands the jobs it never claimed back to the queue in a new message.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from runtime.common import keys, logs, messages, metrics
from runtime.common.aws import client
from runtime.common.imageinfo import ImageInfo, probe
from runtime.common.jobs import JobStatus, JobStore, is_crash_suspect, now_ms
from runtime.common.settings import Settings
from runtime.worker.errors import Failure, classify
from runtime.worker.inputs import read_input
from runtime.worker.models import ModelRegistry
from runtime.worker.models_s3 import build_registry
from runtime.worker.process import Analysis, Photo, analyse, load_photo, render, result_document

log = logging.getLogger(__name__)

T = TypeVar("T")


def for_job(job: dict[str, Any], fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` with the job's ids bound to every log line it writes (``logs.bind``). Bound ids live in a
    context variable, which a pool thread does not inherit, so every stage binds them on its own thread."""
    with logs.bind(job_id=str(job["job_id"]), batch_id=job.get("batch_id")):
        return fn(*args)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class BatchReport:
    worker_id: str
    batch_size: int
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # FAILED by this worker (permanent error or gave up)
    released: list[str] = field(default_factory=list)  # handed back after a transient error (the attempt counts)
    skipped: list[str] = field(default_factory=list)  # missing, already terminal, or held by another worker
    lost: list[str] = field(default_factory=list)  # our lease was taken over before we could record a result
    unclaimed: list[str] = field(default_factory=list)  # never claimed: we were stopped (or DynamoDB refused)
    requeued: list[str] = field(default_factory=list)  # sent in a new message
    unresolved: list[str] = field(default_factory=list)  # still RUNNING under our lease (DynamoDB unreachable)
    handback_failed: bool = False  # released or unclaimed jobs that could not be sent in a new message
    suspects: int = 0  # jobs processed alone because a worker vanished while processing them before
    interrupted: bool = False
    wall_s: float = 0.0  # run() start to end
    compute_s: float = 0.0  # time the inference thread spent decoding and analysing

    @property
    def ok(self) -> bool:
        """Every job is terminal, released or someone else's: the exit-0 condition."""
        return not self.unresolved

    @property
    def settled(self) -> bool:
        """Every job of the message is terminal, someone else's, or back in the queue in a new message: the
        message itself can be deleted."""
        return self.ok and not self.handback_failed

    def summary(self) -> dict[str, Any]:
        out = {k: (len(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}
        # Near 1: compute-bound (add cores); well below 1: the inference thread waits on storage I/O.
        out["compute_share"] = round(self.compute_s / self.wall_s, 3) if self.wall_s else 0.0
        return out


@dataclass
class _Fetched:
    """A job's image, downloaded ahead of time by an I/O thread; nothing is claimed yet."""

    job: dict[str, Any]
    body: bytes | None = None
    info: ImageInfo | None = None
    download_ms: float = 0.0
    error: BaseException | None = None

    @property
    def job_id(self) -> str:
        return str(self.job["job_id"])


@dataclass
class _Held:
    """A claimed job on its way through the pipeline."""

    job: dict[str, Any]
    claimed_at: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    decoded: Photo | None = None

    @property
    def job_id(self) -> str:
        return str(self.job["job_id"])


class _LeaseKeeper:
    """Renews the leases of held jobs every third of the lease, so a long batch keeps what it holds."""

    def __init__(self, store: JobStore, worker_id: str, interval_s: float) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.held: set[str] = set()
        self.lost: set[str] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def add(self, job_id: str) -> None:
        with self._lock:
            self.held.add(job_id)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self.held.discard(job_id)

    def _loop(self) -> None:
        while not self._done.wait(self.interval_s):
            with self._lock:
                held = list(self.held)
            for job_id in held:
                for_job({"job_id": job_id}, self._renew, job_id)

    def _renew(self, job_id: str) -> None:
        try:
            if not self.store.renew_lease(job_id, self.worker_id):
                log.warning("lease on job %s was lost", job_id)
                with self._lock:
                    self.lost.add(job_id)
                    self.held.discard(job_id)
        except Exception:  # a failed renewal is retried next round; the lease is still valid
            log.exception("lease renewal for job %s failed", job_id)


class BatchRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: ModelRegistry,
        store: JobStore,
        s3: Any,
        sqs: Any,
        worker_id: str,
        stop: threading.Event,
        metrics_stream: IO[str] | None = None,
        window: int | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.s3 = s3
        self.sqs = sqs
        self.worker_id = worker_id
        self.stop = stop
        self.metrics_stream = metrics_stream or sys.stdout
        self.window = window or max(2, settings.worker_io_threads)
        self._metrics_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self.report = BatchReport(worker_id=worker_id, batch_size=0)
        self.leases = _LeaseKeeper(store, worker_id, max(1.0, settings.lease_seconds / 3))

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _record(self, bucket: str, job_id: str) -> None:
        with self._report_lock:
            getattr(self.report, bucket).append(job_id)

    def _emit(self, values: dict[str, float], extra_dims: dict[str, str] | None = None, **props: Any) -> None:
        dims = {metrics.SERVICE_DIMENSION: metrics.WORKER_SERVICE, **(extra_dims or {})}
        with self._metrics_lock:  # one EMF document per line, even with several threads writing
            metrics.emit(
                values, dims, namespace=self.settings.metrics_namespace, properties=props, stream=self.metrics_stream
            )

    # --- stage 1, I/O thread: download and check the header (no claim, no write) ------------------------------
    def _prefetch(self, job: dict[str, Any]) -> _Fetched:
        fetched = _Fetched(job=job)
        try:
            started = time.perf_counter()
            body = read_input(self.s3, self.settings, job)  # size-checked before the body, pinned by ETag
            fetched.download_ms = (time.perf_counter() - started) * 1000.0
            fetched.info = probe(body, max_pixels=self.settings.max_pixels)
            fetched.body = body
        except Exception as exc:  # settled once the job is claimed; nothing may escape and stop the batch
            fetched.error = exc
        return fetched

    def _state(self, job: dict[str, Any] | None) -> str:
        return "missing" if job is None else f"{job['status']} (lease {job.get('lease_owner')})"

    # --- stage 2, inference thread: claim, decode, analyse ----------------------------------------------------
    def _claim(self, fetched: _Fetched) -> _Held | None:
        job_id = fetched.job_id
        try:
            job = self.store.claim(job_id, self.worker_id)
        except Exception:  # DynamoDB unreachable: not ours (or, if the write landed, the lease expires)
            log.exception("job %s: claim failed; handing it back", job_id)
            self._record("unclaimed", job_id)
            return None
        if job is None:
            try:
                current = self.store.get(job_id)
            except Exception as exc:
                current = {"status": f"unknown ({exc})", "job_id": job_id}
            log.info("skipping job %s: %s", job_id, self._state(current))
            self._record("skipped", job_id)
            return None
        self.leases.add(job_id)
        held = _Held(job=job, claimed_at=time.perf_counter())
        held.timings_ms["download"] = fetched.download_ms
        return held

    def _compute(self, held: _Held, fetched: _Fetched) -> Analysis:
        """Decode (on this thread, after the claim: decoding is part of the job's attempt) and analyse."""
        if fetched.error is not None:
            raise fetched.error
        assert fetched.body is not None
        started = time.perf_counter()
        card = self.registry.card(held.job["model"])
        held.decoded = load_photo(card, fetched.body, max_pixels=self.settings.max_pixels)
        held.timings_ms["decode"] = (time.perf_counter() - started) * 1000.0
        processor = self.registry.get(held.job["model"])
        return analyse(processor, held.decoded, mm_per_pixel=held.job.get("mm_per_pixel"))

    # --- stage 3, I/O thread: render, upload, record -----------------------------------------------------
    def _finish(self, held: _Held, analysis: Analysis) -> None:
        job, job_id = held.job, held.job_id
        try:
            assert held.decoded is not None
            processor = self.registry.get(job["model"])
            started = time.perf_counter()
            mask, overlay = render(processor, held.decoded, analysis.labels)
            mask_key = keys.mask_key(job["batch_id"], job_id)
            overlay_key = keys.overlay_key(job["batch_id"], job_id)
            for key, body, media in (
                (mask_key, mask, keys.MASK_CONTENT_TYPE),
                (overlay_key, overlay, keys.OVERLAY_CONTENT_TYPE),
            ):
                self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=body, ContentType=media)
            timings = {**held.timings_ms, **analysis.timings_ms, "upload": (time.perf_counter() - started) * 1000.0}
            timings["total"] = (time.perf_counter() - held.claimed_at) * 1000.0
            result = result_document(
                processor,
                held.decoded,
                analysis,
                mm_per_pixel=job.get("mm_per_pixel"),
                timings_ms=timings,
            )
            completed = self.store.complete(
                job_id, self.worker_id, result=result, mask_key=mask_key, overlay_key=overlay_key
            )
        except Exception as exc:
            self._settle_failure(held, exc)
            return
        self.leases.discard(job_id)
        if not completed:
            log.warning("job %s: lease lost before the result was written; result discarded", job_id)
            self._record("lost", job_id)
            return
        self._record("succeeded", job_id)
        self._emit(
            {
                metrics.IMAGES_PROCESSED: 1,
                metrics.INFERENCE_MS: round(analysis.timings_ms["inference"], 3),
                metrics.IMAGE_TOTAL_MS: round(timings["total"], 3),
                metrics.UPLOAD_TO_RESULT_MS: max(0, now_ms() - int(job.get("created_at", now_ms()))),
            },
            job_id=job_id,
            batch_id=job["batch_id"],
            model=job["model"],
        )

    def _settle_failure(self, held: _Held, exc: BaseException) -> None:
        """Permanent error: FAILED with a reason. Transient: release (the attempt counts)."""
        failure: Failure = classify(exc)
        job_id = held.job_id
        if failure.error_class == "processing_error":
            log.error("job %s: unexpected error", job_id, exc_info=exc)
        else:
            log.info("job %s: %s (%s): %r", job_id, failure.reason, failure.error_class, exc)  # raw text: log only
        try:
            if failure.permanent:
                done = self.store.fail(
                    job_id, failure.reason, error_class=failure.error_class, worker_id=self.worker_id
                )
                self._after_fail(job_id, failure.error_class, done)
            else:
                self._release(held, failure.reason)
        except Exception:
            log.exception("job %s: could not record its failure; the lease will expire and reconcile retries", job_id)
            self._record("unresolved", job_id)
        finally:
            self.leases.discard(job_id)

    def _after_fail(self, job_id: str, error_class: str, done: bool) -> None:
        if not done:
            self._record("lost", job_id)
            return
        self._record("failed", job_id)
        self._emit({metrics.IMAGES_FAILED: 1}, job_id=job_id, error_class=error_class)
        self._emit({metrics.IMAGES_FAILED: 1}, {metrics.REASON_DIMENSION: error_class}, job_id=job_id)

    def _release(self, held: _Held, reason: str) -> None:
        status = self.store.release(held.job_id, self.worker_id, reason)
        self.leases.discard(held.job_id)
        if status == JobStatus.QUEUED:
            self._record("released", held.job_id)
        elif status == JobStatus.FAILED:
            self._after_fail(held.job_id, "gave_up", True)
        else:
            self._record("lost", held.job_id)

    # --- the batch ---------------------------------------------------------------------------------------
    def _todo(self, ids: list[str]) -> list[dict[str, Any]]:
        """The jobs of the message that are still QUEUED, in message order (one read for the whole message)."""
        try:
            current = self.store.get_many(ids)
        except Exception:  # DynamoDB unreachable: hand everything back untouched
            log.exception("reading the batch's jobs failed; handing the batch back")
            self.report.unclaimed.extend(ids)
            return []
        todo = []
        for job_id in ids:
            job = current.get(job_id)
            if job is None or job.get("status") != JobStatus.QUEUED:
                with logs.bind(job_id=job_id):
                    log.info("skipping job %s: %s", job_id, self._state(job))
                self._record("skipped", job_id)
            else:
                todo.append(job)
        return todo

    def run(self, job_ids: list[str]) -> BatchReport:
        run_started = time.perf_counter()
        ids = list(dict.fromkeys(job_ids))
        self.report.batch_size = len(ids)
        self._emit({metrics.BATCH_SIZE: len(ids)})
        self.leases.start()
        todo = iter(self._todo(ids))
        pending: deque[Future[_Fetched]] = deque()
        finishing: deque[Future[None]] = deque()
        with ThreadPoolExecutor(self.settings.worker_io_threads, thread_name_prefix="io") as pool:

            def fill() -> None:
                while len(pending) < self.window and not self.stop.is_set():
                    job = next(todo, None)
                    if job is None:
                        return
                    pending.append(pool.submit(for_job, job, self._prefetch, job))

            def drain_finishing() -> None:
                while finishing:
                    finishing.popleft().result()

            fill()
            while pending:
                fetched = pending.popleft().result()  # _prefetch catches everything
                fill()
                if self.stop.is_set():
                    continue  # recorded as unclaimed below, and handed back
                for_job(fetched.job, self._process, fetched, pool, finishing, drain_finishing)
        seen = self._seen()  # the pool has drained: every claimed job is settled
        self.report.unclaimed.extend(i for i in ids if i not in seen)
        self.leases.stop()
        self.report.interrupted = self.stop.is_set()
        self._requeue()
        self.report.wall_s = time.perf_counter() - run_started
        log.info("batch done: %s", self.report.summary())
        return self.report

    def _process(
        self,
        fetched: _Fetched,
        pool: ThreadPoolExecutor,
        finishing: deque[Future[None]],
        drain_finishing: Callable[[], None],
    ) -> None:
        """Claim, decode and analyse one job on this thread, then hand its results to the pool."""
        suspect = is_crash_suspect(fetched.job)
        if suspect:  # alone: nothing else in flight while it is processed
            drain_finishing()
        held = self._claim(fetched)
        if held is None:
            return
        if suspect:
            self.report.suspects += 1
            log.info("job %s: processing it alone (a worker vanished while processing it before)", held.job_id)
        compute_started = time.perf_counter()
        try:
            analysis = self._compute(held, fetched)
        except Exception as exc:
            self._settle_failure(held, exc)
            return
        finally:
            fetched.body = None
            self.report.compute_s += time.perf_counter() - compute_started
        while len(finishing) >= self.window:  # bound memory: rendered results waiting for upload
            finishing.popleft().result()
        finishing.append(pool.submit(for_job, held.job, self._finish, held, analysis))
        if suspect:
            drain_finishing()

    def _seen(self) -> set[str]:
        r = self.report
        return {*r.succeeded, *r.failed, *r.released, *r.skipped, *r.lost, *r.unclaimed, *r.unresolved}

    def _requeue(self) -> None:
        """Send released and never-claimed jobs in a new message, so the one we took can be deleted (D1)."""
        candidates = list(dict.fromkeys([*self.report.released, *self.report.unclaimed]))
        if not candidates:
            return
        if not self.settings.queue_url:
            log.error("no queue URL: %d job(s) wait for reconcile", len(candidates))
            self.report.handback_failed = True
            return
        try:
            current = self.store.get_many(candidates)
            queued = [j for j in candidates if current.get(j, {}).get("status") == JobStatus.QUEUED]
            for message in messages.chunk(queued, self.settings.batch_max_jobs):
                self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=message.to_body())
                for job_id in message.job_ids:
                    self.report.requeued.append(job_id)
                    try:
                        self.store.mark_enqueued(job_id)
                    except Exception:  # the message is out; the worst case is one extra re-drive
                        with logs.bind(job_id=job_id):
                            log.warning("job %s: re-enqueued, but enqueued_at not recorded", job_id)
        except Exception:  # still QUEUED in DynamoDB: the reconciler re-drives them (docs/architecture.md D1)
            log.exception("re-enqueue failed; the jobs wait in their original message or for reconcile")
            self.report.handback_failed = True


def run_batch(
    settings: Settings,
    job_ids: list[str],
    *,
    registry: ModelRegistry | None = None,
    worker_id: str | None = None,
    stop: threading.Event | None = None,
    store: JobStore | None = None,
    s3: Any = None,
    sqs: Any = None,
    metrics_stream: IO[str] | None = None,
) -> BatchReport:
    """Process ``job_ids`` (one JOB_BATCH message) and report what became of each.

    Without a ``registry`` one is built here, once per process and before the first claim: the models folder
    plus the ``models_s3_uri`` prefix, whose downloaded files are removed when the batch is done.
    """
    s3 = s3 or client("s3", settings)
    own_registry = registry is None
    registry = registry or build_registry(settings, s3)
    runner = BatchRunner(
        settings,
        registry=registry,
        store=store or JobStore.from_settings(settings),
        s3=s3,
        sqs=sqs or client("sqs", settings),
        worker_id=worker_id or new_worker_id(),
        stop=stop or threading.Event(),
        metrics_stream=metrics_stream,
    )
    try:
        return runner.run(job_ids)
    finally:
        if own_registry:
            registry.close()
