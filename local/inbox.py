"""The drop folder on the local stack: the inbox queue and our bucket's S3 notification for ``inbox/`` into it, as
the CDK ingestion construct makes them in AWS (moto delivers S3 notifications to SQS)."""

from __future__ import annotations

from typing import Any

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.settings import Settings


def create_inbox(settings: Settings, *, name: str | None = None) -> str:
    """The inbox queue's URL, with ``s3:ObjectCreated:*`` under ``inbox/`` of ``settings.bucket`` sent to it."""
    sqs: Any = client("sqs", settings)
    url = str(sqs.create_queue(QueueName=name or f"{settings.bucket}-inbox")["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("s3", settings).put_bucket_notification_configuration(
        Bucket=settings.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": keys.INBOX_PREFIX}]}},
                }
            ]
        },
    )
    return url
