"""Container images and hardened Fargate task definitions shared by the API, worker and results constructs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from runtime.common.settings import env_name
from stacks.assets import RUNTIME_DIR, asset_excludes
from stacks.config import DeployConfig
from stacks.constructs.network import retention


def image_asset(
    scope: Construct, construct_id: str, service: str, *, file: str = "Dockerfile"
) -> ecr_assets.DockerImageAsset:
    """An x86-64 image (FARGATE_SPOT runs x86 only) built by ``cdk deploy`` from ``runtime/<service>/<file>``."""
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(RUNTIME_DIR),
        file=f"{service}/{file}",
        exclude=asset_excludes(service),
        platform=ecr_assets.Platform.LINUX_AMD64,
    )


def runtime_environment(
    config: DeployConfig, *, bucket: str, table: str, queue_url: str, wake_queue_url: str, region: str
) -> dict[str, str]:
    """The ``SEGSCALE_*`` variables every container reads (names from ``runtime.common.settings``)."""
    values: dict[str, object] = {
        "bucket": bucket,
        "table": table,
        "queue_url": queue_url,
        "wake_queue_url": wake_queue_url,
        "region": region,
        # Every waker and every worker must agree on the slots and the scaling rule (docs/architecture.md D8).
        "max_workers": config.max_workers,
        "jobs_per_worker": config.jobs_per_worker,
        "worker_idle_exit_s": config.worker_idle_exit_s,
        "worker_max_lifetime_s": config.worker_max_lifetime_s,
        "max_upload_bytes": config.max_upload_bytes,
        "max_pixels": config.max_pixels,
        "batch_max_jobs": config.batch_max_jobs,
        "batch_window_s": config.batch_window_s,
        "default_model": config.default_model,
        "retention_days": config.retention_days,
        "auth_enabled": "true",
    }
    if config.models_s3_uri:
        values["models_s3_uri"] = config.models_s3_uri
    return {env_name(k): str(v) for k, v in values.items()}


def log_group(scope: Construct, construct_id: str, config: DeployConfig) -> logs.LogGroup:
    return logs.LogGroup(
        scope, construct_id, retention=retention(config.log_retention_days), removal_policy=RemovalPolicy.DESTROY
    )


def hardened_task(
    scope: Construct,
    construct_id: str,
    *,
    config: DeployConfig,
    service: str,
    cpu: int,
    memory_mib: int,
    environment: dict[str, str],
    secrets: dict[str, ecs.Secret] | None = None,
    port: int | None = None,
    health_check: ecs.HealthCheck | None = None,
    stop_timeout: Duration | None = None,
) -> tuple[ecs.FargateTaskDefinition, ecs.ContainerDefinition]:
    """A task definition whose one container (named ``service``) runs as the image's non-root user on a
    read-only root filesystem; ``/tmp`` is a writable task volume for libraries that spool files there.
    """
    task = ecs.FargateTaskDefinition(
        scope,
        construct_id,
        cpu=cpu,
        memory_limit_mib=memory_mib,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64, operating_system_family=ecs.OperatingSystemFamily.LINUX
        ),
    )
    task.add_volume(name="tmp")
    container = task.add_container(
        service,
        container_name=service,
        image=ecs.ContainerImage.from_docker_image_asset(image_asset(scope, f"{construct_id}Image", service)),
        environment=environment,
        secrets=secrets,
        user="10001",
        readonly_root_filesystem=True,
        logging=ecs.LogDrivers.aws_logs(
            stream_prefix=service, log_group=log_group(scope, f"{construct_id}Logs", config)
        ),
        port_mappings=[ecs.PortMapping(container_port=port)] if port else None,
        health_check=health_check,
        stop_timeout=stop_timeout,
    )
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
    return task, container


def allow_run_task(role: iam.Role, task: ecs.FargateTaskDefinition, cluster: ecs.ICluster) -> None:
    """Lets ``role`` (a schedule's or a pipe's) start ``task`` on ``cluster`` only, and hand the task its two roles.

    RunTask alone is not enough: ECS refuses to start a task whose roles the caller may not pass.
    """
    execution_role = task.obtain_execution_role()
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["ecs:RunTask"],
            resources=[task.task_definition_arn],
            conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[task.task_role.role_arn, execution_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        )
    )
