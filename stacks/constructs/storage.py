"""The image bucket and the job table: the state D1 and D4 say must outlive any compute deployment."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from runtime.common import keys, schema
from stacks.config import DeployConfig

_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


def removal_policy(config: DeployConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY


def _attribute(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[schema.ATTRIBUTE_TYPES[name]])


class Storage(Construct):
    """S3 bucket (uploads, results, reports) with its access-log bucket, and the DynamoDB job table."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        policy = removal_policy(config)
        destroy = not config.retain_data

        # Server access logs cannot go to the bucket they describe; this bucket only receives logs.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(max(90, config.retention_days)))
            ],
            removal_policy=policy,
            auto_delete_objects=destroy,
        )
        expire = Duration.days(config.retention_days)
        rules = [
            s3.LifecycleRule(
                id=f"expire-{prefix.rstrip('/')}",
                prefix=prefix,
                expiration=expire,
                noncurrent_version_expiration=Duration.days(1) if config.bucket_versioned else None,
            )
            for prefix in (keys.UPLOADS_PREFIX, keys.RESULTS_PREFIX, keys.REPORTS_PREFIX)
        ]
        rules.append(
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1))
        )
        self.bucket = s3.Bucket(
            self,
            "Images",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=config.bucket_versioned,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="images/",
            lifecycle_rules=rules,
            # Browsers upload straight to S3 with the presigned POST forms of POST /v1/uploads.
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET],
                    allowed_origins=["*"],
                    allowed_headers=["*"],
                    max_age=3000,
                )
            ],
            removal_policy=policy,
            auto_delete_objects=destroy,
        )

        gsis = schema.GLOBAL_SECONDARY_INDEXES
        self.table = dynamodb.TableV2(
            self,
            "Jobs",
            partition_key=_attribute(schema.TABLE_PARTITION_KEY),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=g["name"],
                    partition_key=_attribute(g["partition_key"]),
                    sort_key=_attribute(g["sort_key"]),
                    projection_type=dynamodb.ProjectionType[g["projection"]],
                )
                for g in gsis
            ],
            deletion_protection=config.retain_data,
            removal_policy=policy,
        )
