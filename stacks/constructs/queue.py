"""The jobs queue and the wake queue, each with its dead-letter queue, with the settings the local stack also uses
(runtime.common.schema). Work waits on the jobs queue; the wake queue only starts worker tasks (D8)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common import schema
from stacks.config import DeployConfig
from stacks.constructs.storage import removal_policy


class JobQueues(Construct):
    """SQS with SQS-managed encryption: the pipe's and the workers' roles need no KMS grant, and TLS is enforced."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        policy = removal_policy(config)
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.seconds(schema.DLQ_RETENTION_S),
            removal_policy=policy,
        )
        self.queue = sqs.Queue(
            self,
            "Jobs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(schema.JOBS_QUEUE_VISIBILITY_TIMEOUT_S),
            retention_period=Duration.seconds(schema.JOBS_QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=schema.DLQ_MAX_RECEIVE_COUNT),
            removal_policy=policy,
        )
        self.wake_dlq = sqs.Queue(
            self,
            "WakeDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.seconds(schema.DLQ_RETENTION_S),
            removal_policy=policy,
        )
        self.wake_queue = sqs.Queue(
            self,
            "Wake",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(schema.WAKE_QUEUE_VISIBILITY_TIMEOUT_S),
            retention_period=Duration.seconds(schema.WAKE_QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.wake_dlq, max_receive_count=schema.WAKE_DLQ_MAX_RECEIVE_COUNT
            ),
            removal_policy=policy,
        )
