"""The jobs queue and the wake queue, each with its dead-letter queue, with the settings the local stack also uses
(runtime.common.schema). Work waits on the jobs queue; the wake queue only starts worker tasks (D8)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common import schema
from stacks.config import DeployConfig
from stacks.constructs.storage import removal_policy


def queue_pair(
    scope: Construct,
    name: str,
    *,
    policy: RemovalPolicy,
    visibility_s: int,
    retention_s: int,
    max_receives: int,
    dlq_id: str | None = None,
) -> tuple[sqs.Queue, sqs.Queue]:
    """A queue and its dead-letter queue, both SQS-encrypted and TLS-only."""
    dlq = sqs.Queue(
        scope,
        dlq_id or (f"{name}DeadLetters" if name != "Jobs" else "DeadLetters"),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.seconds(schema.DLQ_RETENTION_S),
        removal_policy=policy,
    )
    queue = sqs.Queue(
        scope,
        name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=Duration.seconds(visibility_s),
        retention_period=Duration.seconds(retention_s),
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receives),
        removal_policy=policy,
    )
    return queue, dlq


class JobQueues(Construct):
    """SQS with SQS-managed encryption: the pipe's and the workers' roles need no KMS grant, and TLS is enforced."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        policy = removal_policy(config)
        self.queue, self.dlq = queue_pair(
            self,
            "Jobs",
            policy=policy,
            visibility_s=schema.JOBS_QUEUE_VISIBILITY_TIMEOUT_S,
            retention_s=schema.JOBS_QUEUE_RETENTION_S,
            max_receives=schema.DLQ_MAX_RECEIVE_COUNT,
        )
        self.wake_queue, self.wake_dlq = queue_pair(
            self,
            "Wake",
            policy=policy,
            visibility_s=schema.WAKE_QUEUE_VISIBILITY_TIMEOUT_S,
            retention_s=schema.WAKE_QUEUE_RETENTION_S,
            max_receives=schema.WAKE_DLQ_MAX_RECEIVE_COUNT,
        )
