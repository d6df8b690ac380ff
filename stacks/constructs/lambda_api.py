"""Lambda mode for the API: the same FastAPI app through Mangum, as a container image behind a Function URL.

For low-traffic deployments that should cost nothing while idle. What changes compared with Fargate: requests
are capped at 6 MB (Lambda's payload limit; larger images must use presigned uploads), each request is answered
by its own invocation so the API's micro-batching window is set to 0 (every request flushes its own batch
message), and the API key is not injected: the function gets only the secret's ARN and read access to that one
secret, and reads the value itself at run time (``runtime/api/apikey.py``), so the function's configuration holds
no key.
"""

from __future__ import annotations

from aws_cdk import Annotations, Duration, Fn
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from runtime.common.settings import env_name
from stacks.assets import RUNTIME_DIR, asset_excludes
from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources, grant_api, grant_models, grant_secret_value
from stacks.constructs.tasks import log_group

LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
HANDLER = "runtime.api.lambda_handler.handler"


class LambdaApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        resources: AppResources,
        environment: dict[str, str],
        api_key: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        ignored = [k for k in ("certificate_arn", "domain_name") if getattr(config, k)]
        if config.allowed_cidrs != ("0.0.0.0/0",):
            ignored.append("allowed_cidrs")
        if ignored:
            Annotations.of(self).add_warning_v2(
                "segscale:lambda-ignores",
                f"api_mode is 'lambda': {', '.join(ignored)} only apply to the ALB and are ignored. The Function "
                "URL is HTTPS on an AWS domain and open to any address; the API key still guards every request.",
            )
        env = dict(environment)
        env[env_name("batch_window_s")] = "0"
        env[env_name("max_upload_bytes")] = str(min(config.max_upload_bytes, LAMBDA_PAYLOAD_LIMIT_BYTES))
        # Lambda has no ECS-style secret injection, and a deploy-time reference would copy the value into the
        # function's configuration (readable with lambda:GetFunctionConfiguration); so pass only the ARN.
        env.pop(env_name("api_key"), None)
        env[env_name("api_key_secret_arn")] = api_key.secret_arn
        logs = log_group(self, "Logs", config)
        # Its own role with write access to its own log group only (instead of the AWS-managed
        # AWSLambdaBasicExecutionRole, which may write to any log group).
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="segscale API function",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs.log_group_arn])
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            code=lambda_.DockerImageCode.from_image_asset(
                str(RUNTIME_DIR),
                file="api/Dockerfile.lambda",
                cmd=[HANDLER],
                exclude=asset_excludes("api"),
                platform=ecr_assets.Platform.LINUX_AMD64,
            ),
            architecture=lambda_.Architecture.X86_64,
            memory_size=config.lambda_memory_mib,
            # The Function URL is open to any address and WAF cannot front it: this caps what a flood can cost.
            reserved_concurrent_executions=config.lambda_reserved_concurrency,
            timeout=Duration.seconds(config.lambda_timeout_s),
            environment=env,
            log_group=logs,
            role=role,
            description="segscale API (FastAPI through Mangum)",
        )
        grant_api(self.function, resources)
        grant_secret_value(self.function, api_key)
        grant_models(self.function, config.models_location)
        # Auth is the API's own X-Api-Key check, as on the ALB.
        self.function_url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        # The Function URL ends in "/"; keep the host only so "<url>/v1/..." reads the same in both modes.
        self.url = "https://" + Fn.select(2, Fn.split("/", self.function_url.url))
