"""Least-privilege grants per container: each role gets only the S3 prefixes and the API calls its code makes.

Written as explicit statements rather than CDK's ``grant_read``/``grant_read_write`` helpers, which add
wildcard actions (``s3:GetObject*``, ``s3:List*``, ``s3:DeleteObject*``) and ``index/*``. The contract test
(tests/contract) records every AWS call the containers make in the test run and evaluates it against these
statements as synthesized: a new call without its grant fails ``make test`` with the statement to add here, and a
grant no call needs is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs

from runtime.common import batches, clients, idempotency, jobs, keys, schema, workers
from runtime.results import orphans, reconcile


def union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The actions of several declared groups, each once, in first-seen order."""
    return tuple(dict.fromkeys(action for group in groups for action in group))


# The job table actions of each container: the union of the groups its code uses, each declared next to the calls
# that need it (runtime/common/jobs.py, idempotency.py, batches.py, clients.py, workers.py, runtime/results/...), so
# a new call changes its declaration and the grant follows. tests/contract proves every one is needed and none is
# missing.
API_TABLE_ACTIONS = union(
    jobs.INTAKE_ACTIONS,
    idempotency.ACTIONS,
    batches.INTAKE_ACTIONS,
    clients.ACTIONS,
    workers.SLOT_ACTIONS,  # wakes a worker
)
WORKER_TABLE_ACTIONS = union(jobs.WORKER_ACTIONS, batches.PROGRESS_ACTIONS, workers.SLOT_ACTIONS)
RESULTS_TABLE_ACTIONS = union(
    jobs.RECONCILE_ACTIONS,
    batches.PROGRESS_ACTIONS,
    batches.SETTLE_ACTIONS,
    workers.SLOT_ACTIONS,
    reconcile.COUNT_ACTIONS,
    orphans.ACTIONS,
    jobs.INGEST_ACTIONS,
    batches.INGEST_ACTIONS,
)


@dataclass(frozen=True)
class AppResources:
    """The data stack's resources, as the pipeline stack sees them."""

    bucket: s3.IBucket
    table: dynamodb.ITableV2
    queue: sqs.IQueue
    dlq: sqs.IQueue
    wake_queue: sqs.IQueue
    wake_dlq: sqs.IQueue
    inbox: sqs.IQueue | None = None  # the drop folder's queue (docs/ingestion.md), when enabled


def _objects(r: AppResources, prefix: str) -> str:
    return r.bucket.arn_for_objects(f"{prefix}*")


def _s3(role: iam.IGrantable, r: AppResources, actions: list[str], *prefixes: str) -> None:
    iam.Grant.add_to_principal(grantee=role, actions=actions, resource_arns=[_objects(r, p) for p in prefixes])


def _list(role: iam.IGrantable, r: AppResources, prefix: str) -> None:
    """``s3:ListBucket`` on the bucket, for keys under ``prefix`` only."""
    iam.Grant.add_to_principal(
        grantee=role,
        actions=["s3:ListBucket"],
        resource_arns=[r.bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
    )


def _table(role: iam.IGrantable, r: AppResources, actions: tuple[str, ...], *indexes: str) -> None:
    """Item actions on the table; Query also on the named indexes (a Query names its index, not the table)."""
    item_actions = [a for a in actions if a != "dynamodb:Query"]
    arns = [r.table.table_arn]
    if "dynamodb:Query" in actions:
        index_arns = [f"{r.table.table_arn}/index/{name}" for name in indexes]
        iam.Grant.add_to_principal(grantee=role, actions=["dynamodb:Query"], resource_arns=index_arns)
    if item_actions:
        iam.Grant.add_to_principal(grantee=role, actions=item_actions, resource_arns=arns)


def _send(role: iam.IGrantable, r: AppResources, *extra: str) -> None:
    iam.Grant.add_to_principal(grantee=role, actions=["sqs:SendMessage", *extra], resource_arns=[r.queue.queue_arn])


def _wake(role: iam.IGrantable, r: AppResources) -> None:
    """Send wake messages (runtime/common/workers.py): nothing else on the wake queue, which the pipe reads."""
    iam.Grant.add_to_principal(grantee=role, actions=list(workers.WAKE_ACTIONS), resource_arns=[r.wake_queue.queue_arn])


def _drain(role: iam.IGrantable, r: AppResources) -> None:
    """A warm worker takes batch messages from the jobs queue, holds them while it works, deletes them (D8)."""
    iam.Grant.add_to_principal(
        grantee=role,
        actions=["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
        resource_arns=[r.queue.queue_arn],
    )


def models_object_arn(bucket: str, prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"


def grant_models(role: iam.IGrantable, location: tuple[str, str] | None) -> None:
    """Read access to ``models_s3_uri`` (list the prefix, get its objects), when one is configured."""
    if location is not None:
        grant_read_prefixes(role, (location,))


def grant_read_prefixes(
    role: iam.IGrantable, locations: tuple[tuple[str, str], ...], *, list_them: bool = True
) -> None:
    """Get objects (and, with ``list_them``, list keys) under each (bucket, prefix) only: the S3 models, the allowed
    ingestion sources (docs/ingestion.md)."""
    for bucket, prefix in locations:
        if list_them:
            iam.Grant.add_to_principal(
                grantee=role,
                actions=["s3:ListBucket"],
                resource_arns=[f"arn:{Aws.PARTITION}:s3:::{bucket}"],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            )
        iam.Grant.add_to_principal(
            grantee=role, actions=["s3:GetObject"], resource_arns=[models_object_arn(bucket, prefix)]
        )


def grant_api(role: iam.IGrantable, r: AppResources) -> None:
    """Uploads in (direct put, presigned PUT, probe, clean-up of a failed intake); results and reports out."""
    _s3(role, r, ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], keys.UPLOADS_PREFIX)
    _s3(role, r, ["s3:GetObject"], keys.RESULTS_PREFIX, keys.REPORTS_PREFIX)  # presigned GETs
    # Whether a batch's HTML report exists: a listing of its one key (a HEAD of a missing key is 403 without it).
    _list(role, r, keys.REPORTS_PREFIX)
    _table(role, r, API_TABLE_ACTIONS, schema.BY_BATCH_INDEX, schema.API_KEYS_INDEX)
    _send(role, r)
    _wake(role, r)


def grant_worker(role: iam.IGrantable, r: AppResources) -> None:
    """Reads uploads, writes masks and overlays, updates jobs and its slot, drains the jobs queue, hands jobs back
    in new messages, wakes more workers."""
    _s3(role, r, ["s3:GetObject"], keys.UPLOADS_PREFIX)
    _s3(role, r, ["s3:PutObject"], keys.RESULTS_PREFIX)
    _table(role, r, WORKER_TABLE_ACTIONS)
    _send(role, r, "sqs:GetQueueAttributes")  # the backlog it scales by
    _drain(role, r)
    _wake(role, r)


def grant_results(role: iam.IGrantable, r: AppResources) -> None:
    """Reads overlays for reports, writes reports (multipart for big exports), re-drives stuck jobs (and reads
    the queue's depth to tell a backlog from a lost message), and deletes uploads that have no job
    (runtime/results/orphans.py: it lists uploads/ and deletes under it, nothing else)."""
    _s3(role, r, ["s3:GetObject"], keys.RESULTS_PREFIX)
    _s3(role, r, ["s3:PutObject", "s3:AbortMultipartUpload"], keys.REPORTS_PREFIX)
    _list(role, r, keys.UPLOADS_PREFIX)
    _s3(role, r, ["s3:DeleteObject"], keys.UPLOADS_PREFIX)
    _table(role, r, RESULTS_TABLE_ACTIONS, schema.BY_BATCH_INDEX, schema.BY_STATUS_INDEX, schema.BY_WORK_INDEX)
    _send(role, r, "sqs:GetQueueAttributes")
    _wake(role, r)


def grant_inbox(worker: iam.IGrantable, results: iam.IGrantable, r: AppResources) -> None:
    """The drop folder: the worker reads its objects, the ingester lists it (a seal's catch-up) and drains its
    queue."""
    assert r.inbox is not None
    _s3(worker, r, ["s3:GetObject"], keys.INBOX_PREFIX)
    _list(results, r, keys.INBOX_PREFIX)
    iam.Grant.add_to_principal(
        grantee=results,
        actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"],
        resource_arns=[r.inbox.queue_arn],
    )


def grant_secret_value(role: iam.IGrantable, secret: secretsmanager.ISecret) -> None:
    """Read one secret's value: ``GetSecretValue`` only (``grant_read`` adds ``DescribeSecret``: no code calls it)."""
    iam.Grant.add_to_principal(
        grantee=role, actions=["secretsmanager:GetSecretValue"], resource_arns=[secret.secret_arn]
    )
