"""Names of the custom CloudWatch metrics the worker and the results task emit (embedded metric format).

The monitoring construct imports these same constants for the dashboard and alarms, and a test checks that
every custom metric on the dashboard is one the code of its service (``SERVICE_OF``) really emits.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

NAMESPACE = "Segscale"
SERVICE_DIMENSION = "Service"
WORKER_SERVICE = "worker"
RESULTS_SERVICE = "results"
REASON_DIMENSION = "ReasonClass"

IMAGES_PROCESSED = "ImagesProcessed"  # Count, one per SUCCEEDED job
IMAGES_FAILED = "ImagesFailed"  # Count, one per FAILED job (also by ReasonClass)
INFERENCE_MS = "InferenceMs"  # Milliseconds, model run only
IMAGE_TOTAL_MS = "ImageTotalMs"  # Milliseconds, claim to result written
UPLOAD_TO_RESULT_MS = "UploadToResultMs"  # Milliseconds, job created_at to finished_at
BATCH_SIZE = "BatchSize"  # Count, jobs in the JOB_BATCH message
JOBS_QUEUED_TOO_LONG = "JobsQueuedTooLong"  # Count, QUEUED for over stuck_after_s at a reconcile pass (results)

UNITS: dict[str, str] = {
    IMAGES_PROCESSED: "Count",
    IMAGES_FAILED: "Count",
    INFERENCE_MS: "Milliseconds",
    IMAGE_TOTAL_MS: "Milliseconds",
    UPLOAD_TO_RESULT_MS: "Milliseconds",
    BATCH_SIZE: "Count",
    JOBS_QUEUED_TOO_LONG: "Count",
}
# Which service emits each metric: the value of its ``Service`` dimension, and the package whose code emits it.
SERVICE_OF: dict[str, str] = {name: WORKER_SERVICE for name in UNITS} | {JOBS_QUEUED_TOO_LONG: RESULTS_SERVICE}


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
