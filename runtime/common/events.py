"""The EventBridge events segscale sends (docs/notifications.md): their documents, and a sender that never makes
the caller wait.

Public events have source ``segscale`` and a versioned ``detail`` (``"v": 1``; a new field keeps the version, a
removed or changed one raises it). ``Batch Notify Due`` (source ``segscale.internal``) is not for users: a rule
on the bus starts the results task's ``notify`` for the batch (docs/architecture.md D9).
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.common import awscalls
from runtime.common.jobs import Job, JobStatus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SOURCE = "segscale"
INTERNAL_SOURCE = "segscale.internal"
JOB_SUCCEEDED = "Job Succeeded"
JOB_FAILED = "Job Failed"
BATCH_COMPLETED = "Batch Completed"
NOTIFY_DUE = "Batch Notify Due"
INGEST_DUE = "Batch Ingest Due"  # the one event the API may put: start the ingester for a batch (D10)
PUBLIC_DETAIL_TYPES = (JOB_SUCCEEDED, JOB_FAILED, BATCH_COMPLETED)
PUT_EVENTS_MAX_ENTRIES = 10  # EventBridge's limit per PutEvents call


@dataclass(frozen=True)
class Event:
    source: str
    detail_type: str
    detail: dict[str, Any]

    def entry(self, bus: str) -> dict[str, Any]:
        """A PutEvents entry for ``bus``."""
        return {
            "Source": self.source,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "EventBusName": bus,
        }


def job_links(job_id: str) -> dict[str, str]:
    return {"job": f"/v1/jobs/{job_id}"}


def batch_links(batch_id: str) -> dict[str, str]:
    return {
        "batch": f"/v1/batches/{batch_id}",
        "csv": f"/v1/batches/{batch_id}/jobs.csv",
        "report": f"/v1/batches/{batch_id}/report",
    }


def job_event(job: Job) -> Event:
    """``Job Succeeded`` or ``Job Failed`` for a job item that has just reached that status."""
    succeeded = job["status"] == JobStatus.SUCCEEDED
    detail: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "job_id": job["job_id"],
        "batch_id": job["batch_id"],
        "owner": job.get("owner"),  # the API client that uploaded it (None: the bootstrap key's, or older jobs)
        "status": str(job["status"]),
        "model": job.get("model"),
        "file_name": job.get("file_name"),
        "attempts": int(job.get("attempts", 0)),
        "created_at": job.get("created_at"),
        "finished_at": job.get("finished_at"),
        "links": job_links(job["job_id"]),
    }
    if succeeded:
        detail["mask_key"] = job.get("mask_key")
        detail["overlay_key"] = job.get("overlay_key")
    else:
        detail["error_class"] = job.get("error_class")
        detail["error"] = job.get("error")
    return Event(SOURCE, JOB_SUCCEEDED if succeeded else JOB_FAILED, detail)


def batch_completed_detail(batch: Any, *, bucket: str) -> dict[str, Any]:
    """The ``Batch Completed`` detail (also the webhook body's ``detail``) for a completed batch record."""

    def location(key: str | None) -> dict[str, str] | None:
        return None if key is None else {"bucket": bucket, "key": key, "uri": f"s3://{bucket}/{key}"}

    return {
        "v": SCHEMA_VERSION,
        "event_id": batch.event_id,
        "batch_id": batch.batch_id,
        "owner": batch.owner,  # the API client whose batch it is (None: the bootstrap key's, or older batches)
        "state": str(batch.state),
        "total": batch.total,
        "counts": batch.counts,
        "opened_at": batch.opened_at,
        "sealed_at": batch.sealed_at,
        "completed_at": batch.completed_at,
        "export": location(batch.export_key),
        "report": location(batch.report_key),
        "export_error": batch.export_error,
        "links": batch_links(batch.batch_id),
    }


def notify_due_event(batch_id: str) -> Event:
    return Event(INTERNAL_SOURCE, NOTIFY_DUE, {"v": SCHEMA_VERSION, "batch_id": batch_id})


def ingest_due_event(batch_id: str) -> Event:
    return Event(INTERNAL_SOURCE, INGEST_DUE, {"v": SCHEMA_VERSION, "batch_id": batch_id})


class PutEventsError(RuntimeError):
    """Some entries were not accepted by EventBridge (after the client's own retries)."""


def put_events(client: Any, bus: str, events: Sequence[Event]) -> None:
    """Send now, ten entries per call; raises ``PutEventsError`` if any entry was refused."""
    for i in range(0, len(events), PUT_EVENTS_MAX_ENTRIES):
        chunk = events[i : i + PUT_EVENTS_MAX_ENTRIES]
        out = client.put_events(Entries=[e.entry(bus) for e in chunk])
        if out.get("FailedEntryCount"):
            codes = sorted({str(r.get("ErrorCode")) for r in out.get("Entries", []) if r.get("ErrorCode")})
            raise PutEventsError(f"{out['FailedEntryCount']} event(s) refused by EventBridge: {', '.join(codes)}")


class EventPublisher:
    """Sends events from a background thread, up to ten per PutEvents call, so the caller never waits.

    A refused or failed call is retried with exponential backoff (``max_attempts`` in all); events still unsent
    then are logged and counted in ``failed``. At most ``max_pending`` events wait; beyond that ``publish``
    drops the event and counts it in ``dropped`` rather than block a worker. ``close`` (also at interpreter exit)
    sends what is waiting, within its timeout.
    """

    def __init__(
        self,
        client: Any,
        bus: str,
        *,
        max_pending: int = 10_000,
        max_attempts: int = 6,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.bus = bus
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=max_pending)
        self._unfinished = 0
        self._idle = threading.Condition()
        self._thread = awscalls.inherit(threading.Thread(target=self._run, name="event-publisher", daemon=True))
        self._thread.start()

    def publish(self, event: Event) -> bool:
        with self._idle:
            self._unfinished += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._done(1)
            self.dropped += 1
            log.error("event dropped: %d events already wait for EventBridge", self._queue.maxsize)
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every published event was sent or given up; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    close = flush

    def _done(self, n: int) -> None:
        with self._idle:
            self._unfinished -= n
            if not self._unfinished:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < PUT_EVENTS_MAX_ENTRIES:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(batch)
            finally:
                self._done(len(batch))

    def _send(self, batch: list[Event]) -> None:
        pending = batch
        for attempt in range(self.max_attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                out = self.client.put_events(Entries=[e.entry(self.bus) for e in pending])
            except Exception as exc:  # a network error or throttling beyond botocore's retries: try again
                log.warning("PutEvents failed (attempt %d): %s", attempt + 1, exc)
                continue
            results = out.get("Entries", [])
            refused = [e for e, r in zip(pending, results, strict=False) if r.get("ErrorCode")]
            self.sent += len(pending) - len(refused)
            if not refused:
                return
            pending = refused
        self.failed += len(pending)
        log.error(
            "%d event(s) not sent after %d attempts",
            len(pending),
            self.max_attempts,
            extra={"event": "events_not_sent", "detail_types": sorted({e.detail_type for e in pending})},
        )


_publishers: dict[tuple[str, str, str | None], EventPublisher] = {}
_publishers_lock = threading.Lock()


def publisher_for(settings: Any) -> EventPublisher | None:
    """The process's one publisher for ``settings.event_bus`` (None when no bus is configured)."""
    if not settings.event_bus:
        return None
    from runtime.common.aws import client

    key = (settings.event_bus, settings.region, settings.endpoint_url)
    with _publishers_lock:
        if key not in _publishers:
            publisher = EventPublisher(client("events", settings), settings.event_bus)
            atexit.register(publisher.close)
            _publishers[key] = publisher
        return _publishers[key]
