"""The stateless stack (docs/architecture.md D4): network, API, worker pipe, results schedule, monitoring.

It can be destroyed and redeployed without touching the data stack's bucket, table and queues.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from runtime.common.settings import env_name
from stacks.config import DeployConfig
from stacks.constructs.api_service import ApiService
from stacks.constructs.grants import AppResources, grant_inbox, grant_read_prefixes
from stacks.constructs.lambda_api import LambdaApi
from stacks.constructs.monitoring import MonitoredApi, MonitoredResults, Monitoring
from stacks.constructs.network import Network
from stacks.constructs.notifications import Notifications
from stacks.constructs.results import RESULTS_CONTAINER, ResultsTask
from stacks.constructs.tasks import runtime_environment
from stacks.constructs.worker_pipe import WorkerPipe
from stacks.exports import import_resources


class PipelineStack(Stack):
    def _ingestion(self, config: DeployConfig, resources: AppResources, api_role: iam.IGrantable) -> None:
        """S3 ingestion (docs/ingestion.md, D10): the rule that starts the ingester, and read grants for the
        allowed sources and the drop folder, to exactly the containers that read them."""
        self.notifications.run_ingest_on_request(
            network=self.network, task=self.results.task, container=RESULTS_CONTAINER
        )
        self.notifications.grant_put_ingest_due(api_role)
        sources = config.ingest_locations
        grant_read_prefixes(self.results.task.task_role, sources)  # lists a prefix, reads a manifest
        grant_read_prefixes(self.worker.task.task_role, sources, list_them=False)
        grant_read_prefixes(api_role, sources, list_them=False)  # a manifest's first 64 KiB, checked at once
        if resources.inbox is not None:
            grant_inbox(self.worker.task.task_role, self.results.task.task_role, resources)

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        resources = import_resources(self, config)
        environment = runtime_environment(
            config,
            bucket=resources.bucket.bucket_name,
            table=resources.table.table_name,
            queue_url=resources.queue.queue_url,
            wake_queue_url=resources.wake_queue.queue_url,
            region=self.region,
        )
        self.api_key = secretsmanager.Secret(
            self,
            "ApiKey",
            description=f"segscale {config.env_name} API key (header X-Api-Key)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=40, exclude_punctuation=True, include_space=False
            ),
        )
        self.network = Network(self, "Network", config=config)
        # Where ingested images may come from (docs/ingestion.md): the API checks requests against it, the
        # ingester and the worker read there; each role is granted exactly these prefixes.
        if config.ingest_sources:
            environment[env_name("ingest_sources")] = ",".join(config.ingest_sources)
        self.notifications = Notifications(self, "Notifications", config=config)
        # Only the API reads these: the docs switch, and the bus it starts the ingester through (D10).
        api_env = {
            **environment,
            env_name("api_docs_enabled"): str(config.api_docs_enabled).lower(),
            env_name("ingest_bus"): self.notifications.bus.event_bus_name,
        }

        if config.api_mode == "fargate":
            api = ApiService(
                self,
                "Api",
                config=config,
                network=self.network,
                resources=resources,
                environment=api_env,
                api_key=self.api_key,
            )
            monitored = MonitoredApi(load_balancer=api.load_balancer, target_group=api.target_group)
            self.api_service: ApiService | None = api
            self.lambda_api: LambdaApi | None = None
            api_url = api.url
        else:
            lambda_api = LambdaApi(
                self, "Api", config=config, resources=resources, environment=api_env, api_key=self.api_key
            )
            monitored = MonitoredApi(function=lambda_api.function)
            self.api_service = None
            self.lambda_api = lambda_api
            api_url = lambda_api.url
        api_role: iam.IGrantable = api.task.task_role if config.api_mode == "fargate" else lambda_api.function

        # The worker and results tasks never see the API key; only they send events (docs/architecture.md D9).
        task_env = {k: v for k, v in environment.items() if k != env_name("api_key")}
        self.worker = WorkerPipe(
            self,
            "Worker",
            config=config,
            network=self.network,
            resources=resources,
            environment={**task_env, **self.notifications.environment(results=False)},
        )
        self.results = ResultsTask(
            self,
            "Results",
            config=config,
            network=self.network,
            resources=resources,
            environment={
                **task_env,
                **self.notifications.environment(results=True),
                **({env_name("inbox_queue_url"): resources.inbox.queue_url} if resources.inbox is not None else {}),
            },
        )
        for role in (self.worker.task.task_role, self.results.task.task_role):
            self.notifications.grant_put_events(role)
        self.notifications.grant_signing_secret(self.results.task.task_role)
        self.notifications.run_notify_on_completion(
            network=self.network, task=self.results.task, container=RESULTS_CONTAINER
        )
        self._ingestion(config, resources, api_role)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            api=monitored,
            queue=resources.queue,
            dlq=resources.dlq,
            wake_dlq=resources.wake_dlq,
            pipe_name=self.worker.pipe_name,
            table=resources.table,
            results=MonitoredResults(
                schedule_group=self.results.schedule_group,
                task_definition=self.results.task,
                cluster=self.network.cluster,
            ),
        )

        if config.email_batch_completed:
            self.notifications.email_batch_completed(self.monitoring.topic)

        key_cmd = (
            f"aws secretsmanager get-secret-value --secret-id {self.api_key.secret_arn}"
            " --query SecretString --output text"
        )
        CfnOutput(self, "ApiUrl", value=api_url, description="Base URL of the segscale API")
        CfnOutput(
            self,
            "CurlExample",
            value=(f'curl -H "X-Api-Key: $({key_cmd} --region {self.region})" -F file=@photo.jpg {api_url}/v1/images'),
            description="Upload one image",
        )
        CfnOutput(self, "ApiKeySecretArn", value=self.api_key.secret_arn, description="Secrets Manager secret")
        CfnOutput(self, "ApiKeyCommand", value=f"{key_cmd} --region {self.region}", description="Prints the API key")
        CfnOutput(self, "DashboardUrl", value=self.monitoring.dashboard_url)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "ClusterName", value=self.network.cluster.cluster_name)
        CfnOutput(
            self,
            "ExportCommand",
            value=self.results.export_command,
            description="Runs a results export; replace <batch-id>. Reports land under s3://<bucket>/reports/",
        )
        CfnOutput(self, "PipeName", value=self.worker.pipe_name)
        CfnOutput(
            self,
            "EventBusName",
            value=self.notifications.bus.event_bus_name,
            description="Job Succeeded / Job Failed / Batch Completed events (docs/notifications.md)",
        )
        CfnOutput(
            self,
            "IngestSources",
            value=", ".join(config.ingest_sources) or "none",
            description="Where POST /v1/batches may ingest from (docs/ingestion.md)",
        )
        CfnOutput(
            self,
            "WebhookSecretCommand",
            value=(
                f"aws secretsmanager get-secret-value --secret-id {self.notifications.signing_secret.secret_arn}"
                f" --query SecretString --output text --region {self.region}"
            ),
            description="Prints the secret that signs webhook deliveries",
        )
