"""VPC and ECS cluster. S3 and DynamoDB traffic stays on free gateway endpoints instead of the NAT gateway."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import LOG_RETENTION_DAYS, DeployConfig


class Network(Construct):
    """With ``nat_gateways`` = 0 tasks run in public subnets with public IPs (no NAT cost, but exposed ENIs);
    otherwise in private subnets behind the NAT gateway(s). ``task_subnets`` and ``assign_public_ip`` tell the
    pipe, the schedule and the export command which of the two applies.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        private = config.nat_gateways > 0
        subnets = [ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)]
        if private:
            subnets.append(
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20)
            )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=subnets,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
            restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        self.task_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS if private else ec2.SubnetType.PUBLIC
        )
        self.assign_public_ip = not private
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
        # Worker and results tasks only call AWS APIs: no inbound rules at all.
        self.task_security_group = ec2.SecurityGroup(
            self, "TaskSecurityGroup", vpc=self.vpc, description="segscale worker and results tasks (egress only)"
        )

    def subnet_ids(self) -> list[str]:
        """The subnets tasks run in (what the pipe, the schedule and the export command pass to RunTask)."""
        return self.vpc.select_subnets(subnet_type=self.task_subnets.subnet_type).subnet_ids


def retention(days: int) -> logs.RetentionDays:
    """Map a validated day count to CDK's enum (its members are in the same order as the allowed values)."""
    members = [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE]
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[days]
