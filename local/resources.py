"""Create the bucket, table and queues (jobs + DLQ, wake + DLQ) on a moto server from the same definition the CDK
data stack uses."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import boto3

from runtime.common import schema
from runtime.common.settings import Settings, env_name


@dataclass(frozen=True)
class LocalResources:
    endpoint_url: str
    region: str
    bucket: str
    table: str
    queue_url: str
    dlq_url: str
    wake_queue_url: str = ""
    wake_dlq_url: str = ""
    dynamodb_endpoint_url: str | None = None  # DynamoDB on a moto server of its own (the local stack's), or None

    def env(self) -> dict[str, str]:
        """The environment a container would get from CDK, pointed at the moto server."""
        return {
            env_name("endpoint_url"): self.endpoint_url,
            env_name("region"): self.region,
            env_name("bucket"): self.bucket,
            env_name("table"): self.table,
            env_name("queue_url"): self.queue_url,
            env_name("wake_queue_url"): self.wake_queue_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
        } | ({env_name("dynamodb_endpoint_url"): self.dynamodb_endpoint_url} if self.dynamodb_endpoint_url else {})

    def settings(self, **fields: Any) -> Settings:
        """Settings pointed at these resources, plus ``fields``: what tests and benchmarks run the code with."""
        return Settings(
            endpoint_url=self.endpoint_url,
            region=self.region,
            bucket=self.bucket,
            table=self.table,
            queue_url=self.queue_url,
            wake_queue_url=self.wake_queue_url,
            dynamodb_endpoint_url=self.dynamodb_endpoint_url,
            **fields,
        )


def create_resources(
    endpoint_url: str, *, prefix: str = "segscale", region: str = "us-east-1", dynamodb_endpoint_url: str | None = None
) -> LocalResources:
    """Idempotent: re-running against the same server returns the existing resources. ``dynamodb_endpoint_url``:
    the table goes to that moto server instead (the local stack gives DynamoDB a server of its own)."""
    kw = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **kw)
    ddb = boto3.client("dynamodb", **(kw | {"endpoint_url": dynamodb_endpoint_url or endpoint_url}))
    sqs = boto3.client("sqs", **kw)
    bucket = f"{prefix}-data"
    table = f"{prefix}-jobs"
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    with contextlib.suppress(ddb.exceptions.ResourceInUseException):
        ddb.create_table(**schema.boto3_create_table_kwargs(table))
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-jobs-dlq", Attributes=schema.boto3_queue_attributes(None))[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs", Attributes=schema.boto3_queue_attributes(dlq_arn))[
        "QueueUrl"
    ]
    wake_dlq_url = sqs.create_queue(QueueName=f"{prefix}-wake-dlq", Attributes=schema.boto3_queue_attributes(None))[
        "QueueUrl"
    ]
    wake_dlq_arn = sqs.get_queue_attributes(QueueUrl=wake_dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    wake_queue_url = sqs.create_queue(
        QueueName=f"{prefix}-wake", Attributes=schema.boto3_wake_queue_attributes(wake_dlq_arn)
    )["QueueUrl"]
    return LocalResources(
        endpoint_url, region, bucket, table, queue_url, dlq_url, wake_queue_url, wake_dlq_url, dynamodb_endpoint_url
    )
