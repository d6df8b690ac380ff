"""What happens after a job's winning transition to SUCCEEDED or FAILED: the ``JobStore``'s terminal hook.

``JobStore`` calls the hook only when its conditional update won, so each job is counted once however often it is
re-driven or processed (docs/architecture.md D7c, D9). The hook publishes the job's event (in the background),
adds the job to its batch's counters and, if that was the last job of a sealed batch, completes the batch and asks
for its notifications (the ``Batch Notify Due`` event that starts the results task's ``notify``).
"""

from __future__ import annotations

import logging
from typing import Any

from runtime.common.batches import BatchStore
from runtime.common.events import EventPublisher, job_event, notify_due_event, publisher_for
from runtime.common.jobs import Job

log = logging.getLogger(__name__)


class BatchProgress:
    """The terminal hook. Without a publisher (the API, which may not send events) it only counts; a batch it
    completes then gets its notifications from the next reconcile pass."""

    def __init__(self, batches: BatchStore, publisher: EventPublisher | None = None) -> None:
        self.batches = batches
        self.publisher = publisher

    @classmethod
    def count_only(cls, dynamodb_client: Any, table: str) -> BatchProgress:
        return cls(BatchStore(dynamodb_client, table))

    @classmethod
    def for_settings(cls, settings: Any, dynamodb_client: Any) -> BatchProgress:
        """Counting, plus events when ``settings.event_bus`` is set (the worker and the results task)."""
        return cls(BatchStore(dynamodb_client, settings.table), publisher_for(settings))

    def __call__(self, job: Job) -> None:
        if self.publisher is not None:
            self.publisher.publish(job_event(job))
        batch = self.batches.job_finished(job["batch_id"], str(job["status"]))
        if batch is not None and batch.ready_to_complete:
            self.complete(batch.batch_id)

    def complete(self, batch_id: str) -> bool:
        """Try to complete a sealed batch whose jobs are all counted; True if this call did (exactly one does)."""
        completed = self.batches.try_complete(batch_id)
        if completed is None:
            return False
        log.info("batch completed", extra={"event": "batch_completed", "batch_id": batch_id})
        if self.publisher is not None:
            self.publisher.publish(notify_due_event(batch_id))
        return True
