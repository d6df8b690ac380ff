"""Names of the custom CloudWatch metrics the containers emit (embedded metric format on their log streams).

The monitoring construct imports these same constants for the dashboard and alarms, and a test checks that
every custom metric on the dashboard is one its emitting container (``EMITTERS``) really emits.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

NAMESPACE = "Segscale"
SERVICE_DIMENSION = "Service"
WORKER_SERVICE = "worker"
API_SERVICE = "api"
RESULTS_SERVICE = "results"  # the results task: reconcile, export, report
REASON_DIMENSION = "ReasonClass"

IMAGES_PROCESSED = "ImagesProcessed"  # Count, one per SUCCEEDED job, written right after the result
IMAGES_FAILED = "ImagesFailed"  # Count, one per FAILED job (also by ReasonClass)
INFERENCE_MS = "InferenceMs"  # Milliseconds, model run only
IMAGE_TOTAL_MS = "ImageTotalMs"  # Milliseconds, claim to result written
UPLOAD_TO_RESULT_MS = "UploadToResultMs"  # Milliseconds, job created_at to finished_at
BATCH_SIZE = "BatchSize"  # Count, job ids in each batch message a worker takes
JOBS_QUEUED_TOO_LONG = "JobsQueuedTooLong"  # Count, QUEUED for over stuck_after_s at a reconcile pass (results)
# Warm workers (docs/architecture.md D8).
WORKER_WAKES = "WorkerWakes"  # Count, one per wake message sent (a slot reserved for a new worker task)
WORKER_STARTS = "WorkerStarts"  # Count, one per worker task that started and holds a slot
LIVE_WORKERS = "LiveWorkers"  # Count (a gauge: use Maximum), workers holding a slot, seen by each reconcile pass
STARTING_WORKERS = "StartingWorkers"  # Count (gauge), slots woken whose task has not started yet
JOBS_SUCCEEDED = "JobsSucceeded"  # Count, SUCCEEDED jobs counted from the job table by reconcile (exact)
JOBS_FAILED = "JobsFailed"  # Count, FAILED jobs counted from the job table by reconcile (exact)

UNITS: dict[str, str] = {
    IMAGES_PROCESSED: "Count",
    IMAGES_FAILED: "Count",
    INFERENCE_MS: "Milliseconds",
    IMAGE_TOTAL_MS: "Milliseconds",
    UPLOAD_TO_RESULT_MS: "Milliseconds",
    BATCH_SIZE: "Count",
    JOBS_QUEUED_TOO_LONG: "Count",
    WORKER_WAKES: "Count",
    WORKER_STARTS: "Count",
    LIVE_WORKERS: "Count",
    STARTING_WORKERS: "Count",
    JOBS_SUCCEEDED: "Count",
    JOBS_FAILED: "Count",
}

# Which containers emit each metric (with ``Service=<that container>``): the dashboard may only graph a metric
# with a Service its emitters use, and a test checks each emitter's code really emits it.
EMITTERS: dict[str, tuple[str, ...]] = {
    IMAGES_PROCESSED: (WORKER_SERVICE,),
    IMAGES_FAILED: (WORKER_SERVICE,),
    INFERENCE_MS: (WORKER_SERVICE,),
    IMAGE_TOTAL_MS: (WORKER_SERVICE,),
    UPLOAD_TO_RESULT_MS: (WORKER_SERVICE,),
    BATCH_SIZE: (WORKER_SERVICE,),
    JOBS_QUEUED_TOO_LONG: (RESULTS_SERVICE,),
    WORKER_WAKES: (API_SERVICE, WORKER_SERVICE, RESULTS_SERVICE),
    WORKER_STARTS: (WORKER_SERVICE,),
    LIVE_WORKERS: (RESULTS_SERVICE,),
    STARTING_WORKERS: (RESULTS_SERVICE,),
    JOBS_SUCCEEDED: (RESULTS_SERVICE,),
    JOBS_FAILED: (RESULTS_SERVICE,),
}
# The one service of each metric that only one service emits (most of them): its ``Service`` dimension.
SERVICE_OF: dict[str, str] = {name: services[0] for name, services in EMITTERS.items() if len(services) == 1}
# Which service emits each metric: the value of its ``Service`` dimension, and the package whose code emits it.


def emf_record(
    values: dict[str, float],
    dimensions: dict[str, str],
    *,
    namespace: str = NAMESPACE,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One EMF document: CloudWatch Logs turns it into metric data points, no PutMetricData calls needed."""
    unknown = set(values) - set(UNITS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; add them to runtime.common.metrics.UNITS")
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": n, "Unit": UNITS[n]} for n in values],
                }
            ],
        },
        **dimensions,
        **values,
        **(properties or {}),
    }


def emit(
    values: dict[str, float],
    dimensions: dict[str, str],
    *,
    namespace: str = NAMESPACE,
    properties: dict[str, Any] | None = None,
    stream: IO[str] | None = None,
) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(emf_record(values, dimensions, namespace=namespace, properties=properties)) + "\n")
    out.flush()
