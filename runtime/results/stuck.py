"""The ``JobsQueuedTooLong`` metric: how many jobs have waited in QUEUED for longer than ``stuck_after_s``.

Reconcile re-drives such jobs, so a pass that finds them is the system repairing itself; many of them, pass after
pass, mean jobs are not being picked up (the pipe, RunTask or the workers are failing) even though nothing has
FAILED yet. The count is taken before the pass acts, so it reports what the pass found, and it is published as
one EMF record (``Service=results``), which the ``StuckJobs`` alarm watches.
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from runtime.common import metrics
from runtime.common.jobs import JobStatus, JobStore
from runtime.common.settings import Settings

log = logging.getLogger(__name__)

COUNT_CAP = 10_000  # past this the exact number does not matter to the alarm; it bounds the pages read


def emit_stuck_queued(
    settings: Settings, store: JobStore, now_ms: int, *, stream: IO[str] | None = None, cap: int = COUNT_CAP
) -> int | None:
    """Count QUEUED jobs unchanged for ``stuck_after_s`` and emit the count; None when the count failed.

    The metric goes to stderr by default: the results task's stdout is the command's JSON report, and the
    container's log driver sends both streams to CloudWatch Logs, which reads EMF from either.
    """
    try:
        count = store.count_status(JobStatus.QUEUED, updated_to=now_ms - settings.stuck_after_s * 1000, cap=cap)
    except Exception:  # the metric must never stop the pass that repairs the jobs
        log.exception("could not count stuck QUEUED jobs; no %s data point this pass", metrics.JOBS_QUEUED_TOO_LONG)
        return None
    metrics.emit(
        {metrics.JOBS_QUEUED_TOO_LONG: count},
        {metrics.SERVICE_DIMENSION: metrics.RESULTS_SERVICE},
        namespace=settings.metrics_namespace,
        properties={"stuck_after_s": settings.stuck_after_s},
        stream=stream or sys.stderr,
    )
    return count
