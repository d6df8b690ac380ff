"""The stateful stack (D4): bucket, job table, jobs and wake queues. Retained in prod so compute can come and go."""

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
        self.wake_queue = queues.wake_queue
        self.wake_dlq = queues.wake_dlq
        export_resources(
            self,
            config,
            AppResources(
                bucket=self.bucket,
                table=self.table,
                queue=self.queue,
                dlq=self.dlq,
                inbox=self.inbox.queue if self.inbox is not None else None,
                wake_queue=self.wake_queue,
                wake_dlq=self.wake_dlq,
            ),
        )
        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="Images, masks, overlays, reports")
        CfnOutput(self, "TableName", value=self.table.table_name, description="Job table (source of truth)")
        CfnOutput(self, "QueueUrl", value=self.queue.queue_url, description="Jobs queue (batch messages)")
        CfnOutput(
            self, "DeadLetterQueueUrl", value=self.dlq.queue_url, description="Batches received 5 times, unfinished"
        )
        CfnOutput(self, "WakeQueueUrl", value=self.wake_queue.queue_url, description="Wake messages: one worker each")
        CfnOutput(
            self, "WakeDeadLetterQueueUrl", value=self.wake_dlq.queue_url, description="Wakes the pipe failed 3 times"
        )
