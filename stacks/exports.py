"""The named exports through which the pipeline stack uses the data stack's resources (docs/architecture.md D4).

Fixed export names make the interface between the two stacks explicit and stable: CDK's generated names change
with construct paths, and an export that is in use cannot be changed. They also make the cdk-nag findings on
prefix-scoped S3 grants predictable, so each can be acknowledged exactly.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources

KEYS = (
    "bucket-name",
    "bucket-arn",
    "table-name",
    "queue-name",
    "queue-arn",
    "queue-url",
    "dlq-name",
    "dlq-arn",
    "dlq-url",
    "inbox-queue-arn",  # only with inbox_enabled
    "inbox-queue-url",
    "wake-queue-name",
    "wake-queue-arn",
    "wake-queue-url",
    "wake-dlq-name",
    "wake-dlq-arn",
    "wake-dlq-url",
)


def export_name(config: DeployConfig, key: str) -> str:
    if key not in KEYS:
        raise KeyError(f"unknown export {key!r}")
    return f"{config.stack_prefix}-{key}"


def export_resources(scope: Construct, config: DeployConfig, r: AppResources) -> None:
    values = {
        "bucket-name": r.bucket.bucket_name,
        "bucket-arn": r.bucket.bucket_arn,
        "table-name": r.table.table_name,
        "queue-name": r.queue.queue_name,
        "queue-arn": r.queue.queue_arn,
        "queue-url": r.queue.queue_url,
        "dlq-name": r.dlq.queue_name,
        "dlq-arn": r.dlq.queue_arn,
        "dlq-url": r.dlq.queue_url,
        "wake-queue-name": r.wake_queue.queue_name,
        "wake-queue-arn": r.wake_queue.queue_arn,
        "wake-queue-url": r.wake_queue.queue_url,
        "wake-dlq-name": r.wake_dlq.queue_name,
        "wake-dlq-arn": r.wake_dlq.queue_arn,
        "wake-dlq-url": r.wake_dlq.queue_url,
    }
    if r.inbox is not None:
        values["inbox-queue-arn"] = r.inbox.queue_arn
        values["inbox-queue-url"] = r.inbox.queue_url
    for key in KEYS:
        if key not in values:
            continue
        CfnOutput(scope, f"Export-{key}", value=values[key], export_name=export_name(config, key))


def import_resources(scope: Construct, config: DeployConfig) -> AppResources:
    def imp(key: str) -> str:
        return Fn.import_value(export_name(config, key))

    def queue(construct_id: str, key: str) -> sqs.IQueue:
        return sqs.Queue.from_queue_attributes(
            scope,
            construct_id,
            queue_arn=imp(f"{key}-arn"),
            queue_url=imp(f"{key}-url"),
            queue_name=imp(f"{key}-name"),
        )

    return AppResources(
        bucket=s3.Bucket.from_bucket_attributes(
            scope, "Bucket", bucket_arn=imp("bucket-arn"), bucket_name=imp("bucket-name")
        ),
        table=dynamodb.TableV2.from_table_attributes(scope, "Table", table_name=imp("table-name")),
        queue=queue("Queue", "queue"),
        dlq=queue("DeadLetters", "dlq"),
        wake_queue=queue("WakeQueue", "wake-queue"),
        wake_dlq=queue("WakeDeadLetters", "wake-dlq"),
        inbox=sqs.Queue.from_queue_attributes(
            scope, "InboxQueue", queue_arn=imp("inbox-queue-arn"), queue_url=imp("inbox-queue-url")
        )
        if config.inbox_enabled
        else None,
    )
