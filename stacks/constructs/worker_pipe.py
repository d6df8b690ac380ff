"""The worker task definition and the EventBridge Pipe that starts one worker task per wake message (D8).

The pipe reads the wake queue, not the jobs queue: a worker task, once started, drains the jobs queue itself until
it is idle. Whoever sends a wake message has reserved a worker slot first, so the number of tasks is bounded by
``max_workers`` in our code (Pipes has no concurrency limit). The pipe deletes a wake message once RunTask
answers, not when the task starts (D1): a task that never starts frees its slot by expiry and is woken again.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_pipes as pipes
from constructs import Construct

from runtime.common.settings import WAKE_MESSAGE_ENV
from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources, grant_models, grant_worker
from stacks.constructs.network import Network
from stacks.constructs.tasks import allow_run_task, hardened_task, log_group

WORKER_CONTAINER = "worker"
# The wake message body, as the pipe's dynamic path (a small JSON document, far under RunTask's 8,192-character
# override cap): the task adopts the slot it names.
WAKE_MESSAGE_PATH = "$.body"


class WorkerPipe(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        network: Network,
        resources: AppResources,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.task, _ = hardened_task(
            self,
            "Task",
            config=config,
            service=WORKER_CONTAINER,
            cpu=config.worker_cpu,
            memory_mib=config.worker_memory_mib,
            environment=environment,
            # Spot gives two minutes' notice; the worker finishes the image in hand and hands the rest back
            # within that (docs/worker.md).
            stop_timeout=Duration.seconds(120),
        )
        grant_worker(self.task.task_role, resources)
        grant_models(self.task.task_role, config.models_location)

        self.logs = log_group(self, "PipeLogs", config)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description="segscale pipe: read the wake queue, run the worker task, write pipe error logs",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                resources=[resources.wake_queue.queue_arn],
            )
        )
        allow_run_task(self.role, self.task, network.cluster)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.logs.log_group_arn]
            )
        )

        if config.worker_capacity == "FARGATE":
            capacity: dict[str, object] = {"launch_type": "FARGATE"}
        else:
            capacity = {
                "capacity_provider_strategy": [
                    pipes.CfnPipe.CapacityProviderStrategyItemProperty(capacity_provider="FARGATE_SPOT", weight=1)
                ]
            }
        self.pipe_name = f"{config.stack_prefix}-wake-worker"
        self.pipe = pipes.CfnPipe(
            self,
            "Pipe",
            name=self.pipe_name,
            description="One worker task per wake message (segscale architecture D8)",
            role_arn=self.role.role_arn,
            source=resources.wake_queue.queue_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                sqs_queue_parameters=pipes.CfnPipe.PipeSourceSqsQueueParametersProperty(batch_size=1)
            ),
            target=network.cluster.cluster_arn,
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                ecs_task_parameters=pipes.CfnPipe.PipeTargetEcsTaskParametersProperty(
                    task_definition_arn=self.task.task_definition_arn,
                    task_count=1,
                    network_configuration=pipes.CfnPipe.NetworkConfigurationProperty(
                        awsvpc_configuration=pipes.CfnPipe.AwsVpcConfigurationProperty(
                            subnets=network.subnet_ids(),
                            security_groups=[network.task_security_group.security_group_id],
                            assign_public_ip="ENABLED" if network.assign_public_ip else "DISABLED",
                        )
                    ),
                    overrides=pipes.CfnPipe.EcsTaskOverrideProperty(
                        container_overrides=[
                            pipes.CfnPipe.EcsContainerOverrideProperty(
                                name=WORKER_CONTAINER,
                                environment=[
                                    pipes.CfnPipe.EcsEnvironmentVariableProperty(
                                        name=WAKE_MESSAGE_ENV, value=WAKE_MESSAGE_PATH
                                    )
                                ],
                            )
                        ]
                    ),
                    **capacity,
                )
            ),
            log_configuration=pipes.CfnPipe.PipeLogConfigurationProperty(
                level="ERROR",
                cloudwatch_logs_log_destination=pipes.CfnPipe.CloudwatchLogsLogDestinationProperty(
                    log_group_arn=self.logs.log_group_arn
                ),
            ),
            desired_state="RUNNING",
        )
        # The role's policy must exist before the pipe first polls the queue.
        self.pipe.node.add_dependency(self.role)
