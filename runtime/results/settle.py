"""Reconcile's backstop for batch completion (docs/architecture.md D9).

A job counts into its batch in a second write after its own transition (``runtime/common/progress.py``). A
process killed between the two leaves a sealed batch one short of complete, forever. So each reconcile pass looks
at the sealed batches that are due in ``by_work`` (``settle``): one whose counters have not moved for
``stuck_after_s`` is recounted from its jobs (one query of that batch, only then) and completed if every job is
finished. A sealed batch whose counters say it is complete (a completion call that failed) is completed at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from runtime.common.batches import BatchState, BatchStore, Work
from runtime.common.jobs import JobStore
from runtime.common.progress import BatchProgress

log = logging.getLogger(__name__)


@dataclass
class SettleReport:
    checked: int = 0
    recounted: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)


def settle_batches(
    store: JobStore,
    batches: BatchStore,
    progress: BatchProgress,
    *,
    now: int,
    stuck_after_ms: int,
    limit: int = 100,
) -> SettleReport:
    report = SettleReport()
    for batch_id in list(batches.due(Work.SETTLE, now=now, limit=limit)):
        batch = batches.get(batch_id)
        if batch is None or batch.state != BatchState.SEALED:
            continue
        report.checked += 1
        if not batch.ready_to_complete:
            last_change = max(batch.counted_at or 0, batch.sealed_at or 0, batch.recounted_at or 0)
            if last_change > now - stuck_after_ms:
                batches.postpone(batch_id, Work.SETTLE, last_change + stuck_after_ms)
                continue
            repaired = batches.recount(batch_id, store.batch_counts(batch_id), counted_at=batch.counted_at)
            if repaired is None:  # a job was counted meanwhile: the counters move after all
                continue
            report.recounted.append(batch_id)
            log.warning(
                "batch %s recounted: %d of %d finished",
                batch_id,
                repaired.done,
                repaired.total,
                extra={"event": "batch_recounted", "batch_id": batch_id},
            )
            batch = repaired
        if batch.ready_to_complete and progress.complete(batch_id):
            report.completed.append(batch_id)
        elif not batch.ready_to_complete:
            batches.postpone(batch_id, Work.SETTLE, now + stuck_after_ms)
    return report


def settle_for(store: JobStore, *, now: int, stuck_after_ms: int, **kwargs: Any) -> SettleReport:
    """With the store's own terminal hook (counting and, in the results task, events)."""
    progress = store.on_terminal if isinstance(store.on_terminal, BatchProgress) else None
    progress = progress or BatchProgress.count_only(store.client, store.table)
    return settle_batches(store, progress.batches, progress, now=now, stuck_after_ms=stuck_after_ms, **kwargs)
