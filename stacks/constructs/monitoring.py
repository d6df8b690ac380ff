"""Dashboard and alarms for the whole pipeline: API, queues, pipe, warm workers, worker (its own EMF metrics), table,
and the reconcile schedule and results task that back the delivery guarantee (D1).

Custom metrics use the names, namespace and dimensions in ``runtime.common.metrics``, the module every container
emits with, so a renamed metric cannot leave a dashboard graph silently empty (a test checks both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common import metrics
from stacks.config import DeployConfig

PIPES_NAMESPACE = "AWS/EventBridge/Pipes"
PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class MonitoredApi:
    """Either the ALB pieces (Fargate mode) or the function (Lambda mode)."""

    load_balancer: elbv2.IApplicationLoadBalancer | None = None
    target_group: elbv2.IApplicationTargetGroup | None = None
    function: lambda_.IFunction | None = None


@dataclass(frozen=True)
class MonitoredResults:
    """What the delivery alarms watch: the reconcile schedule's group, and the results task and its cluster."""

    schedule_group: scheduler.IScheduleGroup
    task_definition: ecs.ITaskDefinition
    cluster: ecs.ICluster


def custom_metric(
    name: str, statistic: str = "Sum", period: Duration = PERIOD, *, service: str | None = None
) -> cw.Metric:
    """One of our EMF metrics, with the ``Service`` dimension of the service that emits it: the one in
    ``metrics.SERVICE_OF``, or ``service`` for a metric several services emit (``metrics.EMITTERS``)."""
    service = service or metrics.SERVICE_OF.get(name)
    if service not in metrics.EMITTERS.get(name, ()):
        raise KeyError(f"{name!r} is not a metric the {service} emits (runtime.common.metrics.EMITTERS)")
    return cw.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=name,
        dimensions_map={metrics.SERVICE_DIMENSION: service},
        statistic=statistic,
        period=period,
    )


def worker_metric(name: str, statistic: str = "Sum") -> cw.Metric:
    """A metric the worker emits through ``runtime.common.metrics.emit`` with the ``Service=worker`` dimension."""
    return custom_metric(name, statistic, service=metrics.WORKER_SERVICE)


def pipe_metric(pipe_name: str, name: str) -> cw.Metric:
    return cw.Metric(
        namespace=PIPES_NAMESPACE,
        metric_name=name,
        dimensions_map={"PipeName": pipe_name},
        statistic="Sum",
        period=PERIOD,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        api: MonitoredApi,
        queue: sqs.IQueue,
        dlq: sqs.IQueue,
        wake_dlq: sqs.IQueue,
        pipe_name: str,
        table: dynamodb.ITableV2,
        results: MonitoredResults,
    ) -> None:
        super().__init__(scope, construct_id)
        # Alarms publish to an encrypted topic; CloudWatch needs its own grant on a customer-managed key (the
        # AWS-managed SNS key's policy cannot be extended, so alarm notifications to it would be dropped).
        key = kms.Key(
            self,
            "TopicKey",
            enable_key_rotation=True,
            description="segscale alarm topic",
            removal_policy=RemovalPolicy.DESTROY,
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        # EventBridge publishes the results task's failures to the same topic (_notify_results_task_failures).
        key.grant(iam.ServicePrincipal("events.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Alarms", master_key=key, enforce_ssl=True, display_name="segscale alarms")
        if config.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(config.alarm_email))
        action = cw_actions.SnsAction(self.topic)

        api_widgets, api_5xx_rate = self._api(api)
        q_visible = queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        q_age = queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")
        dlq_visible = dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        pipe = {n: pipe_metric(pipe_name, n) for n in ("Invocations", "ExecutionFailed", "TargetStageFailed")}
        processed = worker_metric(metrics.IMAGES_PROCESSED)
        failed = worker_metric(metrics.IMAGES_FAILED)
        failure_rate = cw.MathExpression(
            expression="IF(ok + bad > 0, 100 * bad / (ok + bad), 0)",
            using_metrics={"ok": processed, "bad": failed},
            label="job failure rate (%)",
            period=PERIOD,
        )

        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=config.stack_prefix, default_interval=Duration.hours(3)
        )
        self.dashboard.add_widgets(cw.TextWidget(markdown=f"# segscale {config.env_name}", width=24, height=1))
        self.dashboard.add_widgets(*api_widgets)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Queue depth", left=[q_visible], width=8),
            cw.GraphWidget(title="Oldest message age (s)", left=[q_age], width=8),
            cw.GraphWidget(title="Dead-letter queue depth", left=[dlq_visible], width=8),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Pipe: invocations and failures", left=list(pipe.values()), width=8),
            cw.GraphWidget(
                title="Images processed / failed, as workers report them (a worker killed right after writing a "
                "result misses one: the exact count is under Workers)",
                left=[processed, failed],
                right=[failure_rate],
                width=8,
            ),
            cw.GraphWidget(
                title="Jobs per batch message", left=[worker_metric(metrics.BATCH_SIZE, "Average")], width=8
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Inference latency (ms)",
                left=[worker_metric(metrics.INFERENCE_MS, s) for s in ("p50", "p99")],
                width=8,
            ),
            cw.GraphWidget(
                title="Per-image processing (ms)",
                left=[worker_metric(metrics.IMAGE_TOTAL_MS, s) for s in ("p50", "p99")],
                width=8,
            ),
            cw.GraphWidget(
                title="Upload to result (ms)",
                left=[worker_metric(metrics.UPLOAD_TO_RESULT_MS, s) for s in ("p50", "p99")],
                width=8,
            ),
        )
        workers_widgets, no_worker = self._workers(config, q_visible)
        self.dashboard.add_widgets(*workers_widgets)
        wake_dlq_visible = wake_dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="DynamoDB throttles",
                left=[
                    table.metric(n, statistic="Sum", period=PERIOD)
                    for n in ("ReadThrottleEvents", "WriteThrottleEvents")
                ],
                width=12,
            ),
        )

        self.alarms = [
            cw.Alarm(
                self,
                "DeadLettersNotEmpty",
                alarm_description="Batch messages received five times without being finished are in the DLQ",
                metric=dlq_visible,
                threshold=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            self._any_alarm(
                "WakeDeadLettersNotEmpty",
                "Wake messages the pipe could not turn into a worker task three times are in the wake DLQ (RunTask "
                "failing: role, quota, network); the reconciler keeps waking, check the pipe logs",
                wake_dlq_visible,
                above=0,
            ),
            cw.Alarm(
                self,
                "WorkQueuedNoLiveWorker",
                alarm_description=f"Work has waited in the jobs queue with no live worker for "
                f"{config.alarm_no_worker_minutes} minutes: worker tasks are not starting (wakes are sent, see the "
                "Workers graphs; check the pipe logs, RunTask failures, the Fargate quota)",
                metric=no_worker,
                threshold=0,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=max(1, -(-config.alarm_no_worker_minutes // config.reconcile_interval_minutes)),
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "OldestMessageTooOld",
                alarm_description="Batches wait too long for a worker (no worker starting, or max_workers too low)",
                metric=q_age,
                threshold=config.alarm_oldest_message_s,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "Api5xxRate",
                alarm_description=f"API answers more than {config.alarm_api_5xx_percent}% 5xx",
                metric=api_5xx_rate,
                threshold=config.alarm_api_5xx_percent,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "PipeFailures",
                alarm_description="The pipe failed to start worker tasks",
                metric=cw.MathExpression(
                    expression="failed + target",
                    using_metrics={"failed": pipe["ExecutionFailed"], "target": pipe["TargetStageFailed"]},
                    label="pipe failures",
                    period=PERIOD,
                ),
                threshold=0,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "JobFailureRate",
                alarm_description=f"More than {config.alarm_job_failure_percent}% of jobs fail",
                metric=failure_rate,
                threshold=config.alarm_job_failure_percent,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]
        self.alarms += self._delivery(config, results)
        self.results_task_failures = self._notify_results_task_failures(config, results)
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
        region = Stack.of(self).region
        self.dashboard_url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )

    def _workers(self, config: DeployConfig, queued: cw.IMetric) -> tuple[list[cw.IWidget], cw.MathExpression]:
        """Live and starting workers (counted by each reconcile pass), wakes by who sent them, task starts, and the
        exact job counts from the job table beside the workers' own."""
        every_pass = Duration.minutes(config.reconcile_interval_minutes)
        live = custom_metric(metrics.LIVE_WORKERS, "Maximum", service=metrics.RESULTS_SERVICE, period=every_pass)
        starting = custom_metric(
            metrics.STARTING_WORKERS, "Maximum", service=metrics.RESULTS_SERVICE, period=every_pass
        )
        wakes = [
            custom_metric(metrics.WORKER_WAKES, service=s).with_(label=f"wakes sent by the {s}")
            for s in metrics.EMITTERS[metrics.WORKER_WAKES]
        ]
        starts = worker_metric(metrics.WORKER_STARTS).with_(label="worker tasks started")
        exact = [
            custom_metric(n, service=metrics.RESULTS_SERVICE, period=every_pass)
            for n in (metrics.JOBS_SUCCEEDED, metrics.JOBS_FAILED)
        ]
        queued_now = queued.with_(period=every_pass)  # type: ignore[attr-defined]
        no_worker = cw.MathExpression(
            expression="IF(queued > 0 AND live == 0, 1, 0)",
            using_metrics={"queued": queued_now, "live": live},
            label="work queued, no live worker",
            period=every_pass,
        )
        widgets: list[cw.IWidget] = [
            cw.GraphWidget(
                title=f"Workers: live / starting (max {config.max_workers})", left=[live, starting], width=6
            ),
            cw.GraphWidget(title="Worker wakes and task starts", left=[*wakes, starts], width=6),
            cw.GraphWidget(title="Work queued with no live worker", left=[no_worker], width=6),
            cw.GraphWidget(
                title="Jobs finished: exact count from the job table",
                left=exact,
                width=6,
            ),
        ]
        return widgets, no_worker

    def _api(self, api: MonitoredApi) -> tuple[list[cw.IWidget], cw.MathExpression]:
        if api.load_balancer is not None and api.target_group is not None:
            lb = api.load_balancer.metrics
            requests = lb.request_count(period=PERIOD, statistic="Sum")
            target_5xx = lb.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=PERIOD, statistic="Sum")
            elb_5xx = lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=PERIOD, statistic="Sum")
            target_4xx = lb.http_code_target(elbv2.HttpCodeTarget.TARGET_4XX_COUNT, period=PERIOD, statistic="Sum")
            latency = [lb.target_response_time(period=PERIOD, statistic=s) for s in ("p50", "p99")]
            healthy = api.target_group.metrics.healthy_host_count(period=PERIOD, statistic="Minimum")
            rate = cw.MathExpression(
                expression="IF(req > 0, 100 * (t5 + e5) / req, 0)",
                using_metrics={"req": requests, "t5": target_5xx, "e5": elb_5xx},
                label="API 5xx rate (%)",
                period=PERIOD,
            )
            widgets: list[cw.IWidget] = [
                cw.GraphWidget(title="API requests", left=[requests], width=6),
                cw.GraphWidget(title="API latency p50/p99 (s)", left=latency, width=6),
                cw.GraphWidget(title="API 4xx / 5xx", left=[target_4xx, target_5xx, elb_5xx], width=6),
                cw.GraphWidget(title="API healthy tasks", left=[healthy], width=6),
            ]
            return widgets, rate
        if api.function is None:
            raise ValueError("MonitoredApi needs a load balancer and target group, or a function")
        fn = api.function
        requests = fn.metric("UrlRequestCount", period=PERIOD, statistic="Sum")
        url_4xx = fn.metric("Url4xxCount", period=PERIOD, statistic="Sum")
        url_5xx = fn.metric("Url5xxCount", period=PERIOD, statistic="Sum")
        rate = cw.MathExpression(
            expression="IF(req > 0, 100 * e5 / req, 0)",
            using_metrics={"req": requests, "e5": url_5xx},
            label="API 5xx rate (%)",
            period=PERIOD,
        )
        widgets = [
            cw.GraphWidget(title="API requests", left=[requests], width=6),
            cw.GraphWidget(
                title="API latency p50/p99 (ms)",
                left=[fn.metric_duration(period=PERIOD, statistic=s) for s in ("p50", "p99")],
                width=6,
            ),
            cw.GraphWidget(title="API 4xx / 5xx", left=[url_4xx, url_5xx], width=6),
            cw.GraphWidget(
                title="API errors / throttles",
                left=[fn.metric_errors(period=PERIOD), fn.metric_throttles(period=PERIOD)],
                width=6,
            ),
        ]
        return widgets, rate

    def _delivery(self, config: DeployConfig, results: MonitoredResults) -> list[cw.Alarm]:
        """Alarms on what keeps every accepted job moving (D1): the reconcile schedule and what reconcile finds."""
        # One reconcile pass per interval emits one data point; two intervals always hold at least one.
        period = Duration.minutes(min(2 * config.reconcile_interval_minutes, 1440))
        stuck = custom_metric(metrics.JOBS_QUEUED_TOO_LONG, "Maximum", period)
        target_errors = results.schedule_group.metric_target_errors(period=PERIOD, statistic="Sum")
        dropped = results.schedule_group.metric_dropped(period=PERIOD, statistic="Sum")
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Jobs QUEUED longer than stuck_after_s (reconcile)", left=[stuck], width=12),
            cw.GraphWidget(title="Reconcile schedule: errors / dropped", left=[target_errors, dropped], width=12),
        )
        failures = cw.MathExpression(
            expression="errors + dropped",
            using_metrics={"errors": target_errors, "dropped": dropped},
            label="reconcile schedule failures",
            period=PERIOD,
        )
        return [
            self._any_alarm(
                "ReconcileScheduleFailures",
                "The reconcile schedule could not start the results task (RunTask failed or the invocation was "
                "dropped): stuck jobs are not being re-driven",
                failures,
                above=0,
            ),
            self._any_alarm(
                "StuckJobs",
                f"At least {config.alarm_stuck_jobs} job(s) waited in QUEUED longer than the reconciler's "
                "stuck_after_s: workers are not picking jobs up",
                stuck,
                above=config.alarm_stuck_jobs - 1,
            ),
        ]

    def _any_alarm(self, construct_id: str, description: str, metric: cw.IMetric, *, above: float) -> cw.Alarm:
        """An alarm on one period above ``above``; no data (nothing happened) is not a breach."""
        return cw.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=above,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _notify_results_task_failures(self, config: DeployConfig, results: MonitoredResults) -> events.Rule:
        """Every results task (reconcile, export, report) that stops with a non-zero exit or never starts is
        published to the alarm topic with ECS's own reason, so the message says what to fix."""
        detail = events.EventField.from_path
        rule = events.Rule(
            self,
            "ResultsTaskFailed",
            description=f"segscale {config.env_name}: a results task (reconcile, export, report) failed",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [results.cluster.cluster_arn],
                    "taskDefinitionArn": [results.task_definition.task_definition_arn],
                    "lastStatus": ["STOPPED"],
                    "$or": [
                        {"containers": {"exitCode": [{"anything-but": 0}]}},
                        {"stopCode": ["TaskFailedToStart"]},
                    ],
                },
            ),
        )
        rule.add_target(
            events_targets.SnsTopic(
                self.topic,
                message=events.RuleTargetInput.from_text(
                    f"segscale {config.env_name}: results task {detail('$.detail.taskArn')} failed "
                    f"({detail('$.detail.stopCode')}: {detail('$.detail.stoppedReason')}; exit code "
                    f"{detail('$.detail.containers[0].exitCode')}). Reconcile re-runs on its schedule; see the "
                    "task's log stream in the Results log group."
                ),
            )
        )
        return rule
