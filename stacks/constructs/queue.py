"""The jobs queue and its dead-letter queue, with the settings the local stack also uses (runtime.common.schema)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common import schema
from stacks.config import DeployConfig
from stacks.constructs.storage import removal_policy


class JobQueues(Construct):
    """SQS with SQS-managed encryption: the pipe's role needs no KMS grant to read it, and TLS is enforced."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        visibility_s: int = schema.JOBS_QUEUE_VISIBILITY_TIMEOUT_S,
        queue_id: str = "Jobs",
    ) -> None:
        """``visibility_s``/``queue_id``: the same pair for another use (the drop folder's inbox, D10)."""
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
            queue_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_s),
            retention_period=Duration.seconds(schema.JOBS_QUEUE_RETENTION_S),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=schema.DLQ_MAX_RECEIVE_COUNT),
            removal_policy=policy,
        )
