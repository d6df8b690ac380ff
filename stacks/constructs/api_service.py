"""The API on Fargate behind an ALB: health-checked, autoscaled on CPU and on requests per target."""

from __future__ import annotations

from aws_cdk import Annotations, Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from runtime.common.settings import env_name
from stacks.config import DeployConfig
from stacks.constructs.grants import AppResources, grant_api, grant_models
from stacks.constructs.network import Network
from stacks.constructs.tasks import hardened_task
from stacks.constructs.waf import ApiFirewall

API_PORT = 8000
HEALTH_PATH = "/healthz"
# The slim Python image has no curl; the interpreter itself checks the health endpoint.
_HEALTH_COMMAND = (
    'python -c "import urllib.request; '
    f"urllib.request.urlopen('http://127.0.0.1:{API_PORT}{HEALTH_PATH}', timeout=3)\""
)


class ApiService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        network: Network,
        resources: AppResources,
        environment: dict[str, str],
        api_key: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task, _ = hardened_task(
            self,
            "Task",
            config=config,
            service="api",
            cpu=config.api_cpu,
            memory_mib=config.api_memory_mib,
            environment=environment,
            # The key never appears in the template or the task definition: ECS fetches it at task start.
            secrets={env_name("api_key"): ecs.Secret.from_secrets_manager(api_key)},
            port=API_PORT,
            health_check=ecs.HealthCheck(
                command=["CMD-SHELL", _HEALTH_COMMAND],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(20),
            ),
        )
        grant_api(self.task.task_role, resources)
        grant_models(self.task.task_role, config.models_location)

        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
            if config.certificate_arn
            else None
        )
        if certificate is None:  # prod gets here only with allow_http (stacks/config.py)
            Annotations.of(self).add_warning_v2(
                "segscale:api-http",
                "No certificate_arn configured: the API is served over plain HTTP and the API key travels "
                "unencrypted. Set segscale.certificate_arn in cdk.json for HTTPS.",
            )
        self.service = patterns.ApplicationLoadBalancedFargateService(
            self,
            "Service",
            cluster=network.cluster,
            task_definition=self.task,
            desired_count=config.api_desired_count,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            public_load_balancer=True,
            open_listener=False,
            certificate=certificate,
            protocol=elbv2.ApplicationProtocol.HTTPS if certificate else elbv2.ApplicationProtocol.HTTP,
            redirect_http=certificate is not None,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if certificate else None,
            task_subnets=network.task_subnets,
            assign_public_ip=network.assign_public_ip,
            health_check_grace_period=Duration.seconds(60),
        )
        self.load_balancer = self.service.load_balancer
        self.target_group = self.service.target_group
        self.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
        self.firewall = (
            ApiFirewall(self, "Firewall", config=config, load_balancer=self.load_balancer)
            if config.waf_enabled
            else None
        )
        ports = [ec2.Port.tcp(443), ec2.Port.tcp(80)] if certificate else [ec2.Port.tcp(80)]
        for cidr in config.allowed_cidrs:
            for port in ports:
                self.load_balancer.connections.allow_from(ec2.Peer.ipv4(cidr), port, f"API clients from {cidr}")

        self.target_group.configure_health_check(
            path=HEALTH_PATH, healthy_http_codes="200", interval=Duration.seconds(15), healthy_threshold_count=2
        )
        self.target_group.set_attribute("deregistration_delay.timeout_seconds", "30")

        self.access_logs = s3.Bucket(
            self,
            "AlbAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB log delivery supports SSE-S3 only
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        self.load_balancer.log_access_logs(self.access_logs, "alb")

        scaling = self.service.service.auto_scale_task_count(
            min_capacity=config.api_min_count, max_capacity=config.api_max_count
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=config.api_target_cpu_percent,
            scale_in_cooldown=Duration.seconds(120),
            scale_out_cooldown=Duration.seconds(60),
        )
        scaling.scale_on_request_count(
            "Requests",
            requests_per_target=config.api_requests_per_target,
            target_group=self.target_group,
            scale_in_cooldown=Duration.seconds(120),
            scale_out_cooldown=Duration.seconds(60),
        )
        scheme = "https" if certificate else "http"
        host = config.domain_name or self.load_balancer.load_balancer_dns_name
        self.url = f"{scheme}://{host}"
