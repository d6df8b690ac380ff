"""The drop folder's plumbing in the data stack (docs/ingestion.md, D10): our bucket sends its events to
EventBridge, and a rule puts every object created under ``inbox/`` on the inbox queue, which the results task's
``ingest`` drains.

Why EventBridge and not a bucket notification straight to SQS: CloudFormation checks a notification's queue policy
when the bucket is created, the policy must name the bucket, and the bucket would have to wait for the policy: a
cycle that CDK breaks with a custom-resource Lambda (one more function with a managed policy and a wildcard). The
bucket's own ``EventBridgeConfiguration`` is a plain property, and the rule, not the bucket, is what the queue's
policy names.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from runtime.common import keys, schema
from stacks.config import DeployConfig
from stacks.constructs.queue import queue_pair
from stacks.constructs.storage import removal_policy

INBOX_VISIBILITY_S = 300  # longer than one drain of ten messages, their jobs and a seal's listing page


def enable_event_bridge(bucket: s3.Bucket) -> None:
    """``NotificationConfiguration.EventBridgeConfiguration`` on the bucket itself (no custom resource)."""
    cfn = bucket.node.default_child
    assert isinstance(cfn, s3.CfnBucket)
    cfn.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)


class Inbox(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, bucket: s3.Bucket) -> None:
        super().__init__(scope, construct_id)
        self.queue, self.dlq = queue_pair(  # the same encrypted, TLS-only pair as the jobs queue
            Construct(self, "Sqs"),
            "Queue",
            dlq_id="DeadLetters",
            policy=removal_policy(config),
            visibility_s=INBOX_VISIBILITY_S,
            retention_s=schema.JOBS_QUEUE_RETENTION_S,
            max_receives=schema.DLQ_MAX_RECEIVE_COUNT,
        )
        enable_event_bridge(bucket)
        self.rule = events.Rule(
            self,
            "Rule",
            description="segscale drop folder: objects created under inbox/ go to the inbox queue",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket.bucket_name]}, "object": {"key": [{"prefix": keys.INBOX_PREFIX}]}},
            ),
            targets=[targets.SqsQueue(self.queue)],
        )
