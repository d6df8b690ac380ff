"""The event bus and what hangs off it (docs/notifications.md, docs/architecture.md D9).

- the bus ``segscale-<env>`` that the worker and the results task put job and batch events on (no other role may:
  ``grant_put_events`` is called for those two only);
- an archive of the public events, kept ``event_archive_days``, so they can be replayed;
- the webhook signing secret, generated at deploy time, readable by the results task only;
- the rule that starts the results task's ``notify --batch <id>`` when a batch completes (the internal
  ``Batch Notify Due`` event): the results task, not the worker, writes the report and calls webhooks;
- optionally a rule that e-mails every ``Batch Completed`` to the alarm topic's subscribers.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from runtime.common.events import BATCH_COMPLETED, INGEST_DUE, INTERNAL_SOURCE, NOTIFY_DUE, SOURCE
from runtime.common.settings import env_name
from stacks.config import DeployConfig
from stacks.constructs.network import Network
from stacks.constructs.tasks import allow_run_task

NOTIFY_COMMAND = ["notify", "--batch"]  # + the batch id, from the event
INGEST_COMMAND = ["ingest", "--batch"]  # + the batch id (docs/ingestion.md)


def batch_overrides(container: str, command_prefix: list[str] = NOTIFY_COMMAND) -> str:
    """A rule's input template: RunTask overrides that run ``<command_prefix> <the event's batch id>``."""
    command = json.dumps(command_prefix)[:-1] + ",<batch>]"  # <batch> is replaced by a JSON string
    return f'{{"containerOverrides":[{{"name":"{container}","command":{command}}}]}}'


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.bus = events.EventBus(self, "Bus", event_bus_name=config.stack_prefix)
        self.archive: events.Archive | None = None
        if config.event_archive_days > 0:
            self.archive = self.bus.archive(
                "Archive",
                archive_name=f"{config.stack_prefix}-events",
                description="segscale job and batch events, for replay",
                event_pattern=events.EventPattern(source=[SOURCE]),
                retention=Duration.days(config.event_archive_days),
            )
        self.signing_secret = secretsmanager.Secret(
            self,
            "WebhookSecret",
            description=f"segscale {config.env_name} webhook signing secret (HMAC-SHA256, docs/notifications.md)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )

    # --- who may do what -----------------------------------------------------------------------------------
    def environment(self, *, results: bool) -> dict[str, str]:
        """Settings for the worker (the bus) and the results task (the bus, the secret, the export switch)."""
        env = {env_name("event_bus"): self.bus.event_bus_name}
        if results:
            env[env_name("webhook_secret_arn")] = self.signing_secret.secret_arn
            env[env_name("export_on_completion")] = "true" if self.config.export_on_completion else "false"
        return env

    def grant_put_events(self, role: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(grantee=role, actions=["events:PutEvents"], resource_arns=[self.bus.event_bus_arn])

    def grant_signing_secret(self, role: iam.IGrantable) -> None:
        iam.Grant.add_to_principal(
            grantee=role, actions=["secretsmanager:GetSecretValue"], resource_arns=[self.signing_secret.secret_arn]
        )

    # --- rules ---------------------------------------------------------------------------------------------
    def run_notify_on_completion(
        self, *, network: Network, task: ecs.FargateTaskDefinition, container: str
    ) -> events.CfnRule:
        """``Batch Notify Due`` -> RunTask of the results task with ``notify --batch <id>``. A start that fails is
        retried by EventBridge for an hour, and reconcile sends whatever is still due in any case."""
        self.notify_role, self.notify_rule = self._run_results_on(
            "Notify",
            NOTIFY_DUE,
            NOTIFY_COMMAND,
            network=network,
            task=task,
            container=container,
            what="run the results task's notify when a batch completes",
            rule_description="segscale: a batch completed; run the results task's notify for it",
            target_id="results-notify",
        )
        return self.notify_rule

    def run_ingest_on_request(
        self, *, network: Network, task: ecs.FargateTaskDefinition, container: str
    ) -> events.CfnRule:
        """``Batch Ingest Due`` (from the API) -> RunTask of the results task with ``ingest --batch <id>``
        (docs/ingestion.md, D10); a start that never happens is made up by the next reconcile pass."""
        self.ingest_role, self.ingest_rule = self._run_results_on(
            "Ingest",
            INGEST_DUE,
            INGEST_COMMAND,
            network=network,
            task=task,
            container=container,
            what="run the results task's ingest when a batch from S3 is created",
            rule_description="segscale: a batch from S3 was created; run the results task's ingest for it",
            target_id="results-ingest",
        )
        return self.ingest_rule

    def grant_put_ingest_due(self, role: iam.IGrantable) -> None:
        """The API may put one event: ``Batch Ingest Due`` from the internal source, nothing else."""
        iam.Grant.add_to_principal(
            grantee=role,
            actions=["events:PutEvents"],
            resource_arns=[self.bus.event_bus_arn],
            # Both keys hold one value per entry of the call: every entry must be this one, and both must be there.
            conditions={
                "ForAllValues:StringEquals": {"events:detail-type": [INGEST_DUE], "events:source": [INTERNAL_SOURCE]},
                "Null": {"events:detail-type": "false", "events:source": "false"},
            },
        )

    def _run_results_on(
        self,
        name: str,
        detail_type: str,
        command: list[str],
        *,
        network: Network,
        task: ecs.FargateTaskDefinition,
        container: str,
        what: str,
        rule_description: str,
        target_id: str,
    ) -> tuple[iam.Role, events.CfnRule]:
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description=f"segscale: {what}",
        )
        allow_run_task(role, task, network.cluster)
        rule = events.CfnRule(
            self,
            f"{name}Rule",
            description=rule_description,
            event_bus_name=self.bus.event_bus_name,
            event_pattern={"source": [INTERNAL_SOURCE], "detail-type": [detail_type]},
            state="ENABLED",
            targets=[
                events.CfnRule.TargetProperty(
                    id=target_id,
                    arn=network.cluster.cluster_arn,
                    role_arn=role.role_arn,
                    ecs_parameters=events.CfnRule.EcsParametersProperty(
                        task_definition_arn=task.task_definition_arn,
                        task_count=1,
                        launch_type="FARGATE",
                        network_configuration=events.CfnRule.NetworkConfigurationProperty(
                            aws_vpc_configuration=events.CfnRule.AwsVpcConfigurationProperty(
                                subnets=network.subnet_ids(),
                                security_groups=[network.task_security_group.security_group_id],
                                assign_public_ip="ENABLED" if network.assign_public_ip else "DISABLED",
                            )
                        ),
                    ),
                    input_transformer=events.CfnRule.InputTransformerProperty(
                        input_paths_map={"batch": "$.detail.batch_id"},
                        input_template=batch_overrides(container, command),
                    ),
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_retry_attempts=10, maximum_event_age_in_seconds=3600
                    ),
                )
            ],
        )
        rule.node.add_dependency(role)
        return role, rule

    def email_batch_completed(self, topic: sns.Topic) -> events.Rule:
        """Every ``Batch Completed`` to the alarm topic (its e-mail subscription), as a short readable text. The
        topic is encrypted with a customer-managed key, which EventBridge may use only when its policy says so."""
        if topic.master_key is not None:
            topic.master_key.grant(iam.ServicePrincipal("events.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        field = events.EventField.from_path
        self.email_rule = events.Rule(
            self,
            "EmailRule",
            description="segscale: e-mail each completed batch to the alarm address",
            event_bus=self.bus,
            event_pattern=events.EventPattern(source=[SOURCE], detail_type=[BATCH_COMPLETED]),
            targets=[
                targets.SnsTopic(
                    topic,
                    message=events.RuleTargetInput.from_text(
                        f"segscale batch {field('$.detail.batch_id')} completed: {field('$.detail.total')} images, "
                        f"{field('$.detail.counts.SUCCEEDED')} succeeded, {field('$.detail.counts.FAILED')} failed. "
                        f"Report: {field('$.detail.report.uri')}"
                    ),
                )
            ],
        )
        return self.email_rule
