"""The stateful stack (D4): bucket, job table, queues. Retained in prod so compute can come and go."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources
from stacks.constructs.inbox import Inbox
from stacks.constructs.queue import JobQueues
from stacks.constructs.storage import Storage
from stacks.exports import export_resources


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        storage = Storage(self, "Storage", config=config)
        queues = JobQueues(self, "Queues", config=config)
        self.bucket = storage.bucket
        self.table = storage.table
        self.queue = queues.queue
        self.dlq = queues.dlq
        self.inbox = Inbox(self, "Inbox", config=config, bucket=self.bucket) if config.inbox_enabled else None
        export_resources(
            self,
            config,
            AppResources(
                bucket=self.bucket,
                table=self.table,
                queue=self.queue,
                dlq=self.dlq,
                inbox=self.inbox.queue if self.inbox is not None else None,
            ),
        )
        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="Images, masks, overlays, reports")
        CfnOutput(self, "TableName", value=self.table.table_name, description="Job table (source of truth)")
        CfnOutput(self, "QueueUrl", value=self.queue.queue_url, description="Jobs queue (batch messages)")
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url, description="Messages the pipe failed 5 times")
