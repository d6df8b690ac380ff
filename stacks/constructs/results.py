"""The results task (export, report, reconcile) and the schedule that runs reconcile every N minutes.

Reconcile is what makes the job table, not the queue, the guarantee of delivery (D1): it re-drives jobs
that were never enqueued or whose lease expired, and fails them after the maximum number of attempts.
"""

from __future__ import annotations

import json
from typing import cast

from aws_cdk import Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources, grant_results
from stacks.constructs.network import Network
from stacks.constructs.tasks import allow_run_task, hardened_task

RESULTS_CONTAINER = "results"
RECONCILE_COMMAND = ["reconcile"]


def export_command(batch_id: str = "<batch-id>") -> list[str]:
    """The container command (the image's entry point is ``python -m runtime.results``) for one batch's export."""
    return ["export", "--batch", batch_id]


def overrides(command: list[str]) -> dict[str, object]:
    """RunTask overrides that run ``command`` in the results container."""
    return {"containerOverrides": [{"name": RESULTS_CONTAINER, "command": command}]}


def rate_expression(minutes: int) -> str:
    return f"rate({minutes} {'minute' if minutes == 1 else 'minutes'})"


class ResultsTask(Construct):
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
            service=RESULTS_CONTAINER,
            cpu=config.results_cpu,
            memory_mib=config.results_memory_mib,
            environment=environment,
        )
        grant_results(self.task.task_role, resources)
        public_ip = "ENABLED" if network.assign_public_ip else "DISABLED"
        subnet_ids = network.subnet_ids()
        security_group = network.task_security_group.security_group_id

        self.schedule_role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description="segscale reconcile schedule: run the results task",
        )
        allow_run_task(self.schedule_role, self.task, network.cluster)
        # A group of our own: EventBridge Scheduler's metrics (target errors) are per group, not per schedule.
        self.schedule_group = scheduler.ScheduleGroup(
            self, "Schedules", schedule_group_name=config.stack_prefix, removal_policy=RemovalPolicy.DESTROY
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "Reconcile",
            group_name=cast(scheduler.CfnScheduleGroup, self.schedule_group.node.default_child).ref,  # after it
            description="segscale: re-drive stuck jobs, fail those out of attempts",
            schedule_expression=rate_expression(config.reconcile_interval_minutes),
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=network.cluster.cluster_arn,
                role_arn=self.schedule_role.role_arn,
                input=json.dumps(overrides(RECONCILE_COMMAND)),
                # A missed run is harmless: the next one does the same work.
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=0, maximum_event_age_in_seconds=60 * config.reconcile_interval_minutes
                ),
                ecs_parameters=scheduler.CfnSchedule.EcsParametersProperty(
                    task_definition_arn=self.task.task_definition_arn,
                    task_count=1,
                    launch_type="FARGATE",
                    network_configuration=scheduler.CfnSchedule.NetworkConfigurationProperty(
                        awsvpc_configuration=scheduler.CfnSchedule.AwsVpcConfigurationProperty(
                            subnets=subnet_ids, security_groups=[security_group], assign_public_ip=public_ip
                        )
                    ),
                ),
            ),
        )
        self.schedule.node.add_dependency(self.schedule_role)

        network_arg = Fn.join(
            "",
            [
                "awsvpcConfiguration={subnets=[",
                Fn.join(",", subnet_ids),
                f"],securityGroups=[{security_group}],assignPublicIp={public_ip}}}",
            ],
        )
        self.export_command = (
            f"aws ecs run-task --region {Stack.of(self).region} --cluster {network.cluster.cluster_name}"
            f" --task-definition {self.task.task_definition_arn} --launch-type FARGATE"
            f' --network-configuration "{network_arg}"'
            f" --overrides '{json.dumps(overrides(export_command()), separators=(',', ':'))}'"
        )
