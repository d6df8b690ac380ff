"""Least-privilege grants per container: each role gets only the S3 prefixes and the API calls its code makes.

Written as explicit statements rather than CDK's ``grant_read``/``grant_read_write`` helpers, which add
wildcard actions (``s3:GetObject*``, ``s3:List*``, ``s3:DeleteObject*``) and ``index/*``. If runtime code starts
making a new call (say ``delete_item``), add the action here; AWS answers AccessDenied until then.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

from runtime.common import keys, schema

# The JobStore's calls: get_item, batch_get_item, put_item, update_item (all conditional), query on both indexes.
TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
    "dynamodb:DescribeTable",
]


@dataclass(frozen=True)
class AppResources:
    """The data stack's resources, as the pipeline stack sees them."""

    bucket: s3.IBucket
    table: dynamodb.ITableV2
    queue: sqs.IQueue
    dlq: sqs.IQueue


def _objects(r: AppResources, prefix: str) -> str:
    return r.bucket.arn_for_objects(f"{prefix}*")


def _s3(role: iam.IGrantable, r: AppResources, actions: list[str], *prefixes: str) -> None:
    iam.Grant.add_to_principal(grantee=role, actions=actions, resource_arns=[_objects(r, p) for p in prefixes])


def _table(role: iam.IGrantable, r: AppResources) -> None:
    arns = [r.table.table_arn] + [f"{r.table.table_arn}/index/{g['name']}" for g in schema.GLOBAL_SECONDARY_INDEXES]
    iam.Grant.add_to_principal(grantee=role, actions=TABLE_ACTIONS, resource_arns=arns)


def _send(role: iam.IGrantable, r: AppResources) -> None:
    iam.Grant.add_to_principal(
        grantee=role, actions=["sqs:SendMessage", "sqs:GetQueueAttributes"], resource_arns=[r.queue.queue_arn]
    )


def models_object_arn(bucket: str, prefix: str) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*"


def grant_models(role: iam.IGrantable, location: tuple[str, str] | None) -> None:
    """Read access to ``models_s3_uri`` (list the prefix, get its objects), when one is configured."""
    if location is None:
        return
    bucket, prefix = location
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
    iam.Grant.add_to_principal(
        grantee=role,
        actions=["s3:ListBucket"],
        resource_arns=[r.bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{keys.REPORTS_PREFIX}*"]}},
    )
    _table(role, r)
    _send(role, r)


def grant_worker(role: iam.IGrantable, r: AppResources) -> None:
    """Reads uploads, writes masks and overlays, updates jobs, re-enqueues jobs it releases on SIGTERM."""
    _s3(role, r, ["s3:GetObject"], keys.UPLOADS_PREFIX)
    _s3(role, r, ["s3:PutObject"], keys.RESULTS_PREFIX)
    _table(role, r)
    _send(role, r)


def grant_results(role: iam.IGrantable, r: AppResources) -> None:
    """Reads overlays for reports, writes reports (multipart for big exports), re-drives stuck jobs."""
    _s3(role, r, ["s3:GetObject"], keys.RESULTS_PREFIX)
    _s3(role, r, ["s3:PutObject", "s3:AbortMultipartUpload"], keys.REPORTS_PREFIX)
    _table(role, r)
    _send(role, r)
