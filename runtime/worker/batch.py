"""Process one batch message: claim, download, infer, upload, record, and never lose a job (D1, job state machine).

Pipeline: an I/O thread pool claims jobs and downloads + decodes their images a few jobs ahead, the calling
thread runs inference one image at a time (one onnxruntime session per model uses all cores), and the pool
renders and uploads the results and writes them to DynamoDB. Only a bounded window of jobs is claimed ahead,
so a long batch does not hold leases on work it will not reach for minutes, and a lease keeper renews what is
held. On ``stop`` (SIGTERM) the worker claims nothing more, finishes the image in hand, releases what it had
claimed but not started, re-enqueues those jobs (and the ones it never claimed) and returns.
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from runtime.common import keys, messages, metrics
from runtime.common.aws import client
from runtime.common.imageinfo import probe
from runtime.common.jobs import JobStatus, JobStore, now_ms
from runtime.common.settings import Settings
from runtime.worker.errors import Failure, classify
from runtime.worker.inputs import read_input
from runtime.worker.models import ModelRegistry
from runtime.worker.models_s3 import build_registry
from runtime.worker.process import Analysis, Photo, analyse, load_photo, render, result_document

log = logging.getLogger(__name__)

# Images up to this size are decoded ahead on the I/O threads; larger ones (up to ``max_pixels``) wait as
# compressed bytes and are decoded on the inference thread, so the prefetch window (``worker_io_threads`` jobs)
# holds at most about window x 24 MB of decoded pixels.
PREFETCH_DECODE_MAX_PIXELS = 8_000_000


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class BatchReport:
    worker_id: str
    batch_size: int
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # FAILED by this worker (permanent error or gave up)
    released: list[str] = field(default_factory=list)  # handed back (transient error or stop)
    skipped: list[str] = field(default_factory=list)  # missing, already terminal, or held by another worker
    lost: list[str] = field(default_factory=list)  # our lease was taken over before we could record a result
    unclaimed: list[str] = field(default_factory=list)  # never claimed because we were stopped
    requeued: list[str] = field(default_factory=list)  # sent in a new message
    unresolved: list[str] = field(default_factory=list)  # still RUNNING under our lease (DynamoDB unreachable)
    interrupted: bool = False
    wall_s: float = 0.0  # run() start to end
    compute_s: float = 0.0  # time the inference thread spent decoding (large images) and analysing

    @property
    def ok(self) -> bool:
        """Every job is terminal, released or someone else's: the exit-0 condition."""
        return not self.unresolved

    def summary(self) -> dict[str, Any]:
        out = {k: (len(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}
        # Near 1: compute-bound (add cores); well below 1: the inference thread waits on storage I/O.
        out["compute_share"] = round(self.compute_s / self.wall_s, 3) if self.wall_s else 0.0
        return out


@dataclass
class _Held:
    """A claimed job on its way through the pipeline."""

    job: dict[str, Any]
    claimed_at: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    decoded: Photo | None = None
    body: bytes | None = None  # set instead of ``decoded`` for large images
    error: BaseException | None = None

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
        prefetch_decode_max_pixels: int = PREFETCH_DECODE_MAX_PIXELS,
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
        self.prefetch_decode_max_pixels = prefetch_decode_max_pixels
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

    # --- stage 1, I/O thread: claim, download, decode ------------------------------------------------------
    def _fetch(self, job_id: str) -> _Held | str:
        """A held job, or the name of the report list the id belongs in."""
        if self.stop.is_set():
            return "unclaimed"
        try:
            job = self.store.claim(job_id, self.worker_id)
        except Exception:  # DynamoDB unreachable: not ours (or, if the write landed, the lease expires)
            log.exception("job %s: claim failed; leaving it for the re-enqueue or the reconciler", job_id)
            return "unclaimed"
        if job is None:
            log.info("skipping job %s: %s", job_id, self._state(job_id))
            return "skipped"
        self.leases.add(job_id)
        held = _Held(job=job, claimed_at=time.perf_counter())
        try:
            started = time.perf_counter()
            body = read_input(self.s3, self.settings, job)  # size-checked before the body, pinned by ETag
            held.timings_ms["download"] = (time.perf_counter() - started) * 1000.0
            info = probe(body, max_pixels=self.settings.max_pixels)
            if info.pixels <= self.prefetch_decode_max_pixels:
                self._decode(held, body)
            else:  # decoded just in time on the inference thread, so prefetching stays small in memory
                held.body = body
        except Exception as exc:  # classified in _settle_failure; nothing may escape and stop the batch
            held.error = exc
        return held

    def _decode(self, held: _Held, body: bytes) -> None:
        started = time.perf_counter()
        card = self.registry.card(held.job["model"])
        held.decoded = load_photo(card, body, max_pixels=self.settings.max_pixels)
        held.timings_ms["decode"] = (time.perf_counter() - started) * 1000.0

    def _state(self, job_id: str) -> str:
        try:
            current = self.store.get(job_id)
        except Exception as exc:
            return f"unknown ({exc})"
        return "missing" if current is None else f"{current['status']} (lease {current.get('lease_owner')})"

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

    def _settle_fetch(self, outcome: _Held | str, job_id: str) -> _Held | None:
        if isinstance(outcome, str):
            self._record(outcome, job_id)
            return None
        return outcome

    # --- the batch ---------------------------------------------------------------------------------------
    def run(self, job_ids: list[str]) -> BatchReport:
        run_started = time.perf_counter()
        ids = list(dict.fromkeys(job_ids))
        self.report.batch_size = len(ids)
        self._emit({metrics.BATCH_SIZE: len(ids)})
        self.leases.start()
        todo = iter(ids)
        pending: deque[tuple[str, Future[_Held | str]]] = deque()
        finishing: deque[Future[None]] = deque()
        with ThreadPoolExecutor(self.settings.worker_io_threads, thread_name_prefix="io") as pool:

            def fill() -> None:
                while len(pending) < self.window and not self.stop.is_set():
                    job_id = next(todo, None)
                    if job_id is None:
                        return
                    pending.append((job_id, pool.submit(self._fetch, job_id)))

            fill()
            while pending:
                job_id, future = pending.popleft()
                try:
                    outcome = future.result()
                except Exception:  # _fetch catches everything it expects; this is a bug, not a job's fault
                    log.exception("job %s: fetch failed unexpectedly", job_id)
                    outcome = "unclaimed"
                held = self._settle_fetch(outcome, job_id)
                fill()
                if held is None:
                    continue
                if held.error is not None:
                    pool.submit(self._settle_failure, held, held.error)
                    continue
                if self.stop.is_set():
                    pool.submit(self._release_quietly, held, "worker stopped (SIGTERM) before processing this job")
                    continue
                compute_started = time.perf_counter()
                try:
                    if held.decoded is None and held.body is not None:
                        self._decode(held, held.body)
                        held.body = None
                    assert held.decoded is not None
                    processor = self.registry.get(held.job["model"])
                    analysis = analyse(processor, held.decoded, mm_per_pixel=held.job.get("mm_per_pixel"))
                except Exception as exc:
                    pool.submit(self._settle_failure, held, exc)
                    continue
                finally:
                    self.report.compute_s += time.perf_counter() - compute_started
                while len(finishing) >= self.window:  # bound memory: rendered results waiting for upload
                    finishing.popleft().result()
                finishing.append(pool.submit(self._finish, held, analysis))
        seen = self._seen()  # the pool has drained: every claimed job is settled
        self.report.unclaimed.extend(i for i in ids if i not in seen)
        self.leases.stop()
        self.report.interrupted = self.stop.is_set()
        self._requeue()
        self.report.wall_s = time.perf_counter() - run_started
        log.info("batch done: %s", self.report.summary())
        return self.report

    def _seen(self) -> set[str]:
        r = self.report
        return {*r.succeeded, *r.failed, *r.released, *r.skipped, *r.lost, *r.unclaimed, *r.unresolved}

    def _release_quietly(self, held: _Held, reason: str) -> None:
        try:
            self._release(held, reason)
        except Exception:
            log.exception("job %s: release failed; its lease will expire and reconcile re-drives it", held.job_id)
            self._record("unresolved", held.job_id)

    def _requeue(self) -> None:
        """Send released and never-claimed jobs in a new message: the pipe deleted ours already (D1)."""
        candidates = list(dict.fromkeys([*self.report.released, *self.report.unclaimed]))
        if not candidates:
            return
        if not self.settings.queue_url:
            log.error("no queue URL: %d job(s) wait for reconcile", len(candidates))
            return
        try:
            current = self.store.get_many(candidates)
            queued = [j for j in candidates if current.get(j, {}).get("status") == JobStatus.QUEUED]
            for message in messages.chunk(queued, self.settings.batch_max_jobs):
                self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=message.to_body())
                for job_id in message.job_ids:
                    self.store.mark_enqueued(job_id)
                    self.report.requeued.append(job_id)
        except Exception:  # still QUEUED in DynamoDB: the reconciler re-drives them (docs/architecture.md D1)
            log.exception("re-enqueue failed; reconcile will re-drive the released jobs")


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
