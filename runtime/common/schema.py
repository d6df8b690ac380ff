"""The one definition of the job table and queues, read by the CDK data stack and by the local stack.

Changing a key, an index or a queue setting here changes both, so local mode cannot drift from AWS.
"""

from __future__ import annotations

import json
from typing import Any

# --- job table -----------------------------------------------------------------------------------------
TABLE_PARTITION_KEY = "pk"  # "job#<job_id>" for jobs, "idem#<sha256>" for idempotency records, "batch#<id>",
# "apikey#<key_id>" for client API keys
JOB_PK_PREFIX = "job#"
IDEMPOTENCY_PK_PREFIX = "idem#"
# Worker slots (docs/architecture.md D8): "slot#<n>" for n < max_workers, and one item that serialises the
# fleet's scale decisions. Neither has ``batch_id`` or ``status``, so the sparse indexes never see them.
WORKER_SLOT_PK_PREFIX = "slot#"
FLEET_SCALER_PK = "fleet#scaler"
# How far reconcile has counted finished jobs for the JobsSucceeded / JobsFailed metrics.
METRICS_WATERMARK_PK = "fleet#counted"
# Batch records (runtime/common/batches.py): no ``batch_id``, ``status`` or ``created_at``, so the job indexes
# never see them; the sparse ``by_work`` index holds only the batches with background work due.
BATCH_PK_PREFIX = "batch#"
# Client API keys (runtime/common/clients.py): one item per key, holding only a hash of it. They carry ``key_list``
# (and no ``batch_id`` or ``status``), so only the sparse ``api_keys`` index holds them: ``segscale admin keys list``
# is one Query, never a Scan of the job table.
APIKEY_PK_PREFIX = "apikey#"
TTL_ATTRIBUTE = "expires_at"  # epoch seconds; set on idempotency records only

BY_BATCH_INDEX = "by_batch"  # batch_id (S) + created_at (N): batch status and export
BY_STATUS_INDEX = "by_status"  # status (S) + updated_at (N): reconcile and time-range export
# work (S) + work_due_at (N), keys only: batches waiting for a completion check or their notifications. Keys only,
# so the per-job counter updates of a batch record never write to the index.
BY_WORK_INDEX = "by_work"
API_KEYS_INDEX = "api_keys"  # key_list (S, always "apikey") + created_at (N): every client key, oldest first

ATTRIBUTE_TYPES: dict[str, str] = {
    TABLE_PARTITION_KEY: "S",
    "batch_id": "S",
    "created_at": "N",
    "status": "S",
    "updated_at": "N",
    "work": "S",
    "work_due_at": "N",
    "key_list": "S",
}
# ``projection``: "ALL" (the item) or "KEYS_ONLY" (the table key and the index keys).
GLOBAL_SECONDARY_INDEXES: list[dict[str, str]] = [
    {"name": BY_BATCH_INDEX, "partition_key": "batch_id", "sort_key": "created_at", "projection": "ALL"},
    {"name": BY_STATUS_INDEX, "partition_key": "status", "sort_key": "updated_at", "projection": "ALL"},
    {"name": BY_WORK_INDEX, "partition_key": "work", "sort_key": "work_due_at", "projection": "KEYS_ONLY"},
    {"name": API_KEYS_INDEX, "partition_key": "key_list", "sort_key": "created_at", "projection": "ALL"},
]

# --- queues --------------------------------------------------------------------------------------------
# Jobs queue: workers receive batch messages themselves and set each message's visibility to their slot lease,
# extending it while they work (docs/architecture.md D8); this default only covers a receive that names none.
JOBS_QUEUE_VISIBILITY_TIMEOUT_S = 120
JOBS_QUEUE_RETENTION_S = 4 * 24 * 3600
DLQ_RETENTION_S = 14 * 24 * 3600
DLQ_MAX_RECEIVE_COUNT = 5
# Wake queue: the pipe's source, one message = one worker task. The pipe deletes a message once RunTask answers;
# visibility only covers that call. A wake older than an hour is useless (its slot reservation expired long
# before), so it is not kept longer; three failed RunTask calls move it to its dead-letter queue.
WAKE_QUEUE_VISIBILITY_TIMEOUT_S = 120
WAKE_QUEUE_RETENTION_S = 3600
WAKE_DLQ_MAX_RECEIVE_COUNT = 3


def boto3_create_table_kwargs(table_name: str) -> dict[str, Any]:
    """``dynamodb.create_table`` arguments for this schema (used by the local stack and tests)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in ATTRIBUTE_TYPES.items()],
        "KeySchema": [{"AttributeName": TABLE_PARTITION_KEY, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": gsi["name"],
                "KeySchema": [
                    {"AttributeName": gsi["partition_key"], "KeyType": "HASH"},
                    {"AttributeName": gsi["sort_key"], "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": gsi["projection"]},
            }
            for gsi in GLOBAL_SECONDARY_INDEXES
        ],
    }


def boto3_queue_attributes(dlq_arn: str | None) -> dict[str, str]:
    """``sqs.create_queue`` attributes for the jobs queue (pass ``None`` for a dead-letter queue itself)."""
    if dlq_arn is None:
        return {"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
    return {
        "VisibilityTimeout": str(JOBS_QUEUE_VISIBILITY_TIMEOUT_S),
        "MessageRetentionPeriod": str(JOBS_QUEUE_RETENTION_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": DLQ_MAX_RECEIVE_COUNT}),
    }


def boto3_wake_queue_attributes(dlq_arn: str) -> dict[str, str]:
    """``sqs.create_queue`` attributes for the wake queue."""
    return {
        "VisibilityTimeout": str(WAKE_QUEUE_VISIBILITY_TIMEOUT_S),
        "MessageRetentionPeriod": str(WAKE_QUEUE_RETENTION_S),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": WAKE_DLQ_MAX_RECEIVE_COUNT}),
    }
