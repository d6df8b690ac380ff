"""The checkov findings the synthesized templates may have, each with its reason (as stacks/nag.py does for cdk-nag).

tests/cdk/test_checkov.py scans every template of every variant (dev, prod, Lambda mode) and accepts a failed check
only when its id is listed here and the failing resource (``<Type>.<LogicalId>``, as checkov names it) matches one
of the entry's patterns, so a new resource that breaks the same rule still fails the test. A pattern that matches
no finding in any variant fails the test too: an acknowledgement outlives its reason only until the next run.
"""

from __future__ import annotations

from dataclasses import dataclass

_CDK_HANDLERS = "AWS::Lambda::Function.Custom*CustomResourceProviderHandler*"
_LOG_BUCKETS = ("AWS::S3::Bucket.StorageAccessLogs*", "AWS::S3::Bucket.ApiAlbAccessLogs*")
_HTTP_ONLY = (
    "Only without certificate_arn, when the ALB serves plain HTTP on port 80 (synth warns). prod refuses that "
    "unless allow_http is set on purpose (stacks/config.py); with a certificate the listener is HTTPS with the "
    "recommended TLS policy and port 80 only redirects to it."
)


@dataclass(frozen=True)
class Accepted:
    reason: str
    resources: tuple[str, ...]  # fnmatch patterns on checkov's resource name, "<Type>.<LogicalId>"


ACCEPTED: dict[str, Accepted] = {
    "CKV_AWS_2": Accepted(_HTTP_ONLY, ("AWS::ElasticLoadBalancingV2::Listener.ApiServiceLBPublicListener*",)),
    "CKV_AWS_103": Accepted(_HTTP_ONLY, ("AWS::ElasticLoadBalancingV2::Listener.ApiServiceLBPublicListener*",)),
    "CKV_AWS_260": Accepted(
        _HTTP_ONLY + " Port 80 is open to allowed_cidrs, which defaults to 0.0.0.0/0 for a public API.",
        ("AWS::EC2::SecurityGroup.ApiServiceLBSecurityGroup*",),
    ),
    "CKV_AWS_115": Accepted(
        "CDK's own custom-resource handlers (emptying dev buckets on delete, locking the default security group) "
        "run only during deployments, a few invocations each. The API function has reserved concurrency "
        "(lambda_reserved_concurrency).",
        (_CDK_HANDLERS,),
    ),
    "CKV_AWS_116": Accepted(
        "These functions are invoked synchronously (by CloudFormation, and by the Function URL for the API): "
        "the caller sees every error and retries; a dead-letter queue only ever receives failed asynchronous "
        "invocations.",
        (_CDK_HANDLERS, "AWS::Lambda::Function.ApiFunction*"),
    ),
    "CKV_AWS_117": Accepted(
        "These functions call only AWS APIs (S3, DynamoDB, SQS, Secrets Manager, EC2) and reach no private "
        "resource; inside the VPC they would need a NAT gateway or interface endpoints for the same calls and "
        "gain no protection.",
        (_CDK_HANDLERS, "AWS::Lambda::Function.ApiFunction*"),
    ),
    "CKV_AWS_149": Accepted(
        "The API key and webhook signing secrets are encrypted with the AWS managed key for Secrets Manager, usable "
        "only through Secrets Manager in this account; who may read a value is decided by IAM (the API's role for "
        "the API key, the results task's role for the signing secret), which a customer managed key would not "
        "narrow further.",
        ("AWS::SecretsManager::Secret.ApiKey*", "AWS::SecretsManager::Secret.NotificationsWebhookSecret*"),
    ),
    "CKV_AWS_158": Accepted(
        "CloudWatch Logs encrypts every log group at rest with service keys. The logs hold request metadata, job "
        "ids and error reasons; request bodies, image bytes and API keys are never logged (docs/api.md, Logs), "
        "so a customer managed key would add cost and key-policy coupling without protecting a secret.",
        ("AWS::Logs::LogGroup.*",),
    ),
    "CKV_AWS_173": Accepted(
        "The function's environment holds only non-secret SEGSCALE_* settings and the API key secret's ARN, never "
        "the key itself (stacks/constructs/lambda_api.py); Lambda encrypts it at rest with its AWS managed key.",
        ("AWS::Lambda::Function.ApiFunction*",),
    ),
    "CKV_AWS_18": Accepted(
        "These buckets only receive access logs (the images bucket's and the ALB's); logging access to a log "
        "bucket would recurse (cdk-nag's S1 finding on the same buckets is acknowledged for the same reason).",
        _LOG_BUCKETS,
    ),
    "CKV_AWS_21": Accepted(
        "Log buckets are written once per object by AWS services and expire by lifecycle. Images are written "
        "under unique per-job keys and expire after retention_days; versioning is the bucket_versioned option, "
        "and an upload replaced after submit is refused by the ETag the job pins (docs/api.md).",
        (*_LOG_BUCKETS, "AWS::S3::Bucket.StorageImages*"),
    ),
    "CKV_AWS_192": Accepted(
        "The API is Python (FastAPI under uvicorn): there is no Log4j to exploit. The AWS known-bad-inputs rule "
        "group, which blocks the lookup pattern, comes with waf_managed_rules (docs/deploy.md).",
        ("AWS::WAFv2::WebACL.ApiFirewallWebAcl*",),
    ),
    "CKV_AWS_258": Accepted(
        "In Lambda mode the Function URL is the public API: every /v1 request is authenticated by the API's own "
        "X-Api-Key check, as behind the ALB; AWS_IAM auth would make every client sign requests with AWS "
        "credentials.",
        ("AWS::Lambda::Url.ApiFunctionFunctionUrl*",),
    ),
    "CKV_AWS_27": Accepted(
        "The jobs queues and the drop folder's inbox queues use SQS-managed server-side encryption "
        "(SqsManagedSseEnabled, asserted by tests/cdk/test_wiring.py); this check only recognises a KMS key. The "
        "messages carry job ids, or S3 event records (bucket, key, size, ETag), never image data.",
        ("AWS::SQS::Queue.Queues*", "AWS::SQS::Queue.InboxSqs*"),
    ),
}
