"""Network: a VPC over two AZs and the security groups that connect ALB → tasks → database.

All three security groups live here so the Data and Compute stacks only reference them
(rules between stacks would make the stacks depend on each other both ways).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from ccproxy_infra import settings as cfg


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: cfg.Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # public: ALB and NAT; app: Fargate tasks (egress to Anthropic, Bedrock, ECR,
        # Secrets Manager through NAT); data: Aurora, no route out at all.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=2,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        # Image layers come from S3; a gateway endpoint is free and keeps them off NAT.
        self.vpc.add_gateway_endpoint("S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3)

        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.alb_security_group = ec2.SecurityGroup(
            self,
            "AlbSecurityGroup",
            vpc=self.vpc,
            description="ccproxy ALB: HTTPS (and HTTP for the redirect) from the internet",
            allow_all_outbound=False,
        )
        self.service_security_group = ec2.SecurityGroup(
            self,
            "ServiceSecurityGroup",
            vpc=self.vpc,
            description="ccproxy tasks: port 8000 from the ALB; egress to upstreams",
            allow_all_outbound=True,
        )
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=self.vpc,
            description="ccproxy Aurora: PostgreSQL from the tasks only",
            allow_all_outbound=False,
        )

        for port in (443, 80):
            self.alb_security_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"clients, port {port}")
        self.alb_security_group.add_egress_rule(
            self.service_security_group,
            ec2.Port.tcp(cfg.CONTAINER_PORT),
            "ALB to gateway tasks",
        )
        self.service_security_group.add_ingress_rule(
            self.alb_security_group,
            ec2.Port.tcp(cfg.CONTAINER_PORT),
            "ALB to gateway tasks",
        )
        self.database_security_group.add_ingress_rule(
            self.service_security_group, ec2.Port.tcp(5432), "gateway tasks to PostgreSQL"
        )

        NagSuppressions.add_resource_suppressions(
            self.alb_security_group,
            [
                NagPackSuppression(
                    id="AwsSolutions-EC23",
                    reason="Internet-facing ALB: Claude Code clients connect from anywhere, "
                    "on 443 and on 80 (which only redirects to 443); nothing else is open.",
                )
            ],
        )
