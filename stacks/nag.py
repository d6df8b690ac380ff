"""cdk-nag (AwsSolutions) registration and every acknowledged finding, each on its resource, with its reason.

cdk-nag 3 runs as a CDK validation plugin: any finding not acknowledged here makes synth fail, so a new
resource that breaks a rule cannot slip into a deployment unnoticed. Acknowledgements are placed on the
narrowest construct that owns the finding, never on a stack or the app.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from aws_cdk.aws_iam import IRole
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from runtime.common import keys
from stacks.config import DeployConfig
from stacks.data_stack import DataStack
from stacks.exports import export_name
from stacks.pipeline_stack import PipelineStack

PACK = "AwsSolutions"


def register(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def ack(construct: IConstruct | None, rule: str, reason: str) -> None:
    """Acknowledge ``AwsSolutions-<rule>`` (with its ``[finding]`` suffix for IAM5) on ``construct`` only.

    ``construct`` is often an L2's ``node.default_child``, typed optional: a missing one is a bug in this file.
    """
    if construct is None:
        raise ValueError(f"nothing to acknowledge {rule} on: the construct has no default child")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}-{rule}", reason=reason))


def _object_wildcard(config: DeployConfig, prefix: str) -> str:
    """The IAM5 finding for a grant on ``<bucket>/<prefix>*`` (the bucket ARN is a named import)."""
    return f"IAM5[Resource::{export_name(config, 'bucket-arn')}/{prefix}*]"


def acknowledge(data: DataStack, pipeline: PipelineStack, config: DeployConfig) -> None:
    _acknowledge_data(data)
    _acknowledge_pipeline(pipeline, config)


def _acknowledge_data(data: DataStack) -> None:
    del data


def _ack_object_grants(policy: IConstruct, config: DeployConfig, who: str, prefixes: tuple[str, ...]) -> None:
    for prefix in prefixes:
        ack(
            policy,
            _object_wildcard(config, prefix),
            f"Object keys under {prefix} are built by runtime/common/keys.py from generated ids, so they cannot be "
            f"listed in advance; the grant is limited to that prefix and to the object actions the {who} code "
            "calls (stacks/constructs/grants.py).",
        )


def _ack_models_grant(policy: IConstruct, config: DeployConfig, who: str) -> None:
    if config.models_location is None:
        return
    bucket, prefix = config.models_location
    ack(
        policy,
        f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}*]",
        f"models_s3_uri is a folder of model folders whose files are only known at run time; the {who} may only "
        "list that prefix and read objects under it (docs/models.md).",
    )


def _ack_ingest_grants(policy: IConstruct, config: DeployConfig, who: str) -> None:
    """The allowed ingestion sources (docs/ingestion.md): prefixes of the operator's own choosing, read in place."""
    for bucket, prefix in config.ingest_locations:
        ack(
            policy,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}*]",
            f"ingest_sources lists the prefixes batches may be ingested from; their object names are the users' "
            f"and only known at run time. The {who} may only read objects under each (and the results task list "
            "it): nothing else outside our bucket (docs/ingestion.md).",
        )
    if config.inbox_enabled and who == "worker":
        _ack_object_grants(policy, config, who, (keys.INBOX_PREFIX,))


def _default_policy(role: IRole) -> IConstruct:
    policy = role.node.find_child("DefaultPolicy").node.default_child
    if policy is None:
        raise ValueError(f"{role.node.path} has no default policy to acknowledge findings on")
    return policy


# Which S3 prefixes each container's grant covers (stacks/constructs/grants.py).
OBJECT_PREFIXES: dict[str, tuple[str, ...]] = {
    "api": (keys.UPLOADS_PREFIX, keys.RESULTS_PREFIX, keys.REPORTS_PREFIX),
    "worker": (keys.UPLOADS_PREFIX, keys.RESULTS_PREFIX),
    "results": (keys.RESULTS_PREFIX, keys.REPORTS_PREFIX, keys.UPLOADS_PREFIX),
}


def _acknowledge_pipeline(p: PipelineStack, config: DeployConfig) -> None:
    ack(
        p.api_key.node.default_child,
        "SMG4",
        "The API key is a static shared secret handed to clients; automatic rotation would break every client. "
        "Rotate it by hand (docs/deploy.md): Fargate tasks read it at start, so restart the API service; the "
        "Lambda API re-reads it when a presented key does not match.",
    )
    ack(
        p.notifications.signing_secret.node.default_child,
        "SMG4",
        "The webhook signing secret is shared with every webhook receiver, which verify deliveries with it; "
        "automatic rotation would break their checks unannounced. Rotate it by hand (docs/notifications.md): the "
        "results task reads it on each notify run.",
    )
    tasks = {"worker": p.worker.task, "results": p.results.task}
    if p.api_service is not None:
        tasks["api"] = p.api_service.task
    for name, task in tasks.items():
        ack(
            task.node.default_child,
            "ECS2",
            f"The {name} container's environment holds only non-secret SEGSCALE_* settings (bucket, table, queue, "
            "event bus, limits, and the webhook signing secret's ARN, never its value); the API key is injected "
            "from Secrets Manager as an ECS secret.",
        )
        ack(
            _default_policy(task.obtain_execution_role()),
            "IAM5[Resource::*]",
            f"The {name} task's execution role needs ecr:GetAuthorizationToken, which supports no resource "
            "narrower than '*' (CDK adds it for the image asset's ECR pull).",
        )
        _ack_object_grants(_default_policy(task.task_role), config, name, OBJECT_PREFIXES[name])
        if name in ("api", "worker"):
            _ack_models_grant(_default_policy(task.task_role), config, name)
        _ack_ingest_grants(_default_policy(task.task_role), config, name)
    if p.lambda_api is not None:
        role = p.lambda_api.function.role
        assert role is not None
        _ack_object_grants(_default_policy(role), config, "api", OBJECT_PREFIXES["api"])
        _ack_models_grant(_default_policy(role), config, "api")
        _ack_ingest_grants(_default_policy(role), config, "api")
    if p.api_service is not None:
        if "0.0.0.0/0" in config.allowed_cidrs:
            ack(
                p.api_service.load_balancer.connections.security_groups[0].node.default_child,
                "EC23",
                "allowed_cidrs includes 0.0.0.0/0: the upload API is meant to be reachable from anywhere. Every "
                "/v1 route needs the API key; /healthz (no AWS calls), the web console's static files (/ and "
                "/console/*, no data) and, unless api_docs is off (the prod default), /docs, /redoc and "
                "/openapi.json answer without one. "
                + (
                    f"The WAF web ACL blocks an address after {config.waf_rate_limit} requests in 5 minutes. "
                    if config.waf_enabled
                    else "waf_enabled is off: nothing limits the request rate per address. "
                )
                + "Narrow segscale.allowed_cidrs to restrict who can connect.",
            )
        ack(
            p.api_service.access_logs.node.default_child,
            "S1",
            "This bucket only receives the ALB's access logs; logging access to a log bucket would recurse.",
        )
