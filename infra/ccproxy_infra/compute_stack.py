"""Compute: ECS Fargate service behind an HTTPS ALB, plus the one-off task definition.

The one-off task definition (family `ccproxy-ops`) runs `ccproxy migrate` by default and
any other CLI command through a run-task command override (infra/README.md).
"""

from __future__ import annotations

import re

from aws_cdk import Aws, CfnOutput, Duration, Fn, RemovalPolicy, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from ccproxy_infra import settings as cfg
from ccproxy_infra.data_stack import DataStack
from ccproxy_infra.network_stack import NetworkStack

CONTAINER_NAME = "gateway"
SERVICE_FAMILY = "ccproxy"
OPS_FAMILY = "ccproxy-ops"
SERVE_COMMAND = ["ccproxy", "serve", "--host", "0.0.0.0", "--port", str(cfg.CONTAINER_PORT)]
MIGRATE_COMMAND = ["ccproxy", "migrate"]

# <account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag | @sha256:digest]
_ECR_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?P<cn>\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def container_image(construct: Construct, image_uri: str | None) -> ecs.ContainerImage:
    """The gateway image: built from the repo's Dockerfile at deploy time by default.

    `from_asset` only stages the build context at synth time (no Docker needed); Docker
    runs in `cdk deploy`. With `-c imageUri=…` a prebuilt image is used instead; a private
    ECR URI goes through from_ecr_repository so the execution role may pull from that one
    repository (another account's repository must also allow this account to pull).
    """
    if not image_uri:
        return ecs.ContainerImage.from_asset(
            str(cfg.REPO_ROOT),
            file="Dockerfile",
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
    match = _ECR_URI.match(image_uri)
    if match:
        partition = "aws-cn" if match["cn"] else "aws"
        repository = ecr.Repository.from_repository_attributes(
            construct,
            "ImageRepo",
            repository_arn=f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repo']}",
            repository_name=match["repo"],
        )
        return ecs.ContainerImage.from_ecr_repository(repository, tag=match["digest"] or match["tag"] or "latest")
    return ecs.ContainerImage.from_registry(image_uri)


class ComputeStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: cfg.Settings,
        network: NetworkStack,
        data: DataStack,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = network.vpc
        app_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        # JSON lines with EMF metrics; CloudWatch extracts the metrics from this group.
        self.log_group = logs.LogGroup(
            self,
            "GatewayLogs",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.task_role = self._task_role(data)
        image = container_image(self, settings.image_uri)

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "GatewayTask",
            family=SERVICE_FAMILY,
            cpu=cfg.TASK_CPU,
            memory_limit_mib=cfg.TASK_MEMORY_MIB,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self._add_gateway_container(
            self.task_definition,
            image=image,
            data=data,
            command=SERVE_COMMAND,
            stream_prefix="gateway",
            serve=True,
        )

        self.ops_task_definition = ecs.FargateTaskDefinition(
            self,
            "OpsTask",
            family=OPS_FAMILY,
            cpu=cfg.TASK_CPU,
            memory_limit_mib=cfg.TASK_MEMORY_MIB,
            task_role=self.task_role,
            execution_role=self.task_definition.obtain_execution_role(),
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self._add_gateway_container(
            self.ops_task_definition,
            image=image,
            data=data,
            command=MIGRATE_COMMAND,
            stream_prefix="ops",
            serve=False,
        )

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=cfg.MIN_TASKS,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=app_subnets,
            security_groups=[network.service_security_group],
            assign_public_ip=False,
            health_check_grace_period=Duration.seconds(60),
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        scaling = self.service.auto_scale_task_count(min_capacity=cfg.MIN_TASKS, max_capacity=cfg.MAX_TASKS)
        scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=60,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        scaling.scale_on_memory_utilization(
            "MemoryScaling",
            target_utilization_percent=70,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

        self._load_balancer(settings, network)
        self._outputs(settings, network)
        self._suppress_nag()

    # --- pieces ---------------------------------------------------------------------

    def _task_role(self, data: DataStack) -> iam.Role:
        role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="ccproxy gateway: Bedrock invoke, its own KMS key, its own secrets",
        )
        # Bedrock fallback (SPEC §4). Region is a wildcard because cross-region inference
        # profiles (us.*, global.*) route to foundation models in other regions; models
        # are limited to Anthropic's. https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeAnthropicModelsOnBedrock",
                actions=[
                    "bedrock:InvokeModel",
                    "bedrock:InvokeModelWithResponseStream",
                    "bedrock:CountTokens",
                ],
                resources=[
                    f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/anthropic.*",
                    f"arn:{Aws.PARTITION}:bedrock:*:{Aws.ACCOUNT_ID}:inference-profile/*",
                ],
            )
        )
        # Envelope encryption of stored Bedrock credentials: this one key, nothing else.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="EnvelopeKeyForBedrockCredentials",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[data.bedrock_key.key_arn],
            )
        )
        # ECS injects the secrets (execution role); the task role may read the same ones
        # so a setting given as a Secrets Manager ARN also works (SPEC §9).
        for secret in self._secrets(data):
            secret.grant_read(role)
        return role

    @staticmethod
    def _secrets(data: DataStack):
        return (
            data.database_url_secret,
            data.key_hash_secret,
            data.jwt_secret,
            data.admin_secret,
            data.plan_key_secret,
        )

    def _add_gateway_container(
        self,
        task_definition: ecs.FargateTaskDefinition,
        *,
        image: ecs.ContainerImage,
        data: DataStack,
        command: list[str],
        stream_prefix: str,
        serve: bool,
    ) -> ecs.ContainerDefinition:
        container = task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=image,
            command=command,
            essential=True,
            stop_timeout=Duration.seconds(cfg.STOP_TIMEOUT_SECONDS),
            environment={
                "CCPROXY_DRAIN_SECONDS": str(cfg.DRAIN_SECONDS),
                "CCPROXY_KMS_KEY_ID": data.bedrock_key.key_arn,
                "CCPROXY_BEDROCK_DEFAULT_REGION": Aws.REGION,
                "CCPROXY_LOG_LEVEL": "info",
                # Behind the ALB (issue 16): client addresses come from X-Forwarded-For;
                # the per-address connection cap would count ALB nodes, so it is the
                # total; idle keep-alive outlives the ALB's, so the ALB closes first.
                "CCPROXY_FORWARDED_HOPS": "1",
                "CCPROXY_MAX_CONNECTIONS_PER_ADDRESS": "10000",
                "CCPROXY_KEEPALIVE_SECONDS": str(cfg.ALB_IDLE_TIMEOUT_SECONDS + 60),
            },
            secrets={
                "CCPROXY_DATABASE_URL": ecs.Secret.from_secrets_manager(data.database_url_secret),
                "CCPROXY_KEY_HASH_SECRET": ecs.Secret.from_secrets_manager(data.key_hash_secret),
                "CCPROXY_JWT_SECRET": ecs.Secret.from_secrets_manager(data.jwt_secret),
                "CCPROXY_ADMIN_USERNAME": ecs.Secret.from_secrets_manager(data.admin_secret, "username"),
                "CCPROXY_ADMIN_PASSWORD_HASH": ecs.Secret.from_secrets_manager(data.admin_secret, "password_hash"),
                "CCPROXY_PLAN_API_KEY": ecs.Secret.from_secrets_manager(data.plan_key_secret, "api_key"),
            },
            # awslogs: every stdout JSON line (with its EMF block) lands in the log group.
            # Non-blocking so a slow log pipe never stalls a stream being relayed.
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=stream_prefix,
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
            health_check=(
                ecs.HealthCheck(
                    command=[
                        "CMD",
                        "python",
                        "-c",
                        "import urllib.request; urllib.request.urlopen("
                        f"'http://127.0.0.1:{cfg.CONTAINER_PORT}/health', timeout=4)",
                    ],
                    interval=Duration.seconds(30),
                    timeout=Duration.seconds(5),
                    retries=3,
                    start_period=Duration.seconds(30),
                )
                if serve
                else None
            ),
        )
        if serve:
            container.add_port_mappings(ecs.PortMapping(container_port=cfg.CONTAINER_PORT, protocol=ecs.Protocol.TCP))
        return container

    def _load_balancer(self, settings: cfg.Settings, network: NetworkStack) -> None:
        self.access_log_bucket = s3.Bucket(
            self,
            "AlbAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # ALB log delivery needs SSE-S3
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=network.vpc,
            internet_facing=True,
            security_group=network.alb_security_group,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            idle_timeout=Duration.seconds(cfg.ALB_IDLE_TIMEOUT_SECONDS),
            drop_invalid_header_fields=True,
            http2_enabled=True,
        )
        self.load_balancer.log_access_logs(self.access_log_bucket, prefix="alb")

        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(settings.certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,  # ingress rules are explicit in the Network stack
        )
        self.target_group = self.https_listener.add_targets(
            "Gateway",
            port=cfg.CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[
                self.service.load_balancer_target(container_name=CONTAINER_NAME, container_port=cfg.CONTAINER_PORT)
            ],
            health_check=elbv2.HealthCheck(
                path="/health",
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            # A stopping task keeps its in-flight streams (up to 10 minutes) while it is
            # deregistering; ECS sends SIGTERM only after this, then waits stop_timeout.
            deregistration_delay=Duration.seconds(600),
        )
        self.http_listener = self.load_balancer.add_redirect(source_port=80, target_port=443, open=False)

    def _outputs(self, settings: cfg.Settings, network: NetworkStack) -> None:
        private_subnets = network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids
        for output_id, value, description in (
            ("ClusterName", self.cluster.cluster_name, "ECS cluster"),
            ("ServiceName", self.service.service_name, "ECS service"),
            (
                "OpsTaskDefinitionArn",
                self.ops_task_definition.task_definition_arn,
                "one-off task: ccproxy migrate / CLI",
            ),
            ("ContainerName", CONTAINER_NAME, "container name for command overrides"),
            ("PrivateSubnetIds", Fn.join(",", private_subnets), "subnets for run-task"),
            ("ServiceSecurityGroupId", network.service_security_group.security_group_id, "security group for run-task"),
            ("LoadBalancerDnsName", self.load_balancer.load_balancer_dns_name, "point the domain's DNS record here"),
            ("BaseUrl", f"https://{settings.domain_name}", "ANTHROPIC_BASE_URL prefix"),
            ("LogGroupName", self.log_group.log_group_name, "gateway JSON logs"),
        ):
            CfnOutput(self, output_id, value=value, description=description)

    def _suppress_nag(self) -> None:
        NagSuppressions.add_resource_suppressions(
            self.task_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Bedrock model ARNs: the region is a wildcard because "
                    "cross-region inference profiles invoke the model in other regions; "
                    "models are limited to anthropic.*, profiles to this account.",
                    applies_to=[
                        "Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/anthropic.*",
                        "Resource::arn:<AWS::Partition>:bedrock:*:<AWS::AccountId>:inference-profile/*",
                    ],
                )
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.task_definition.obtain_execution_role(),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ecr:GetAuthorizationToken has no resource-level permissions; "
                    "AWS requires Resource '*' for it. Image pulls and secret reads are "
                    "scoped to their ARNs.",
                    applies_to=["Resource::*"],
                )
            ],
            apply_to_children=True,
        )
        for task_definition in (self.task_definition, self.ops_task_definition):
            NagSuppressions.add_resource_suppressions(
                task_definition,
                [
                    NagPackSuppression(
                        id="AwsSolutions-ECS2",
                        reason="Only non-secret settings are plain environment variables "
                        "(drain seconds, KMS key ARN, region, log level); every secret is "
                        "injected from Secrets Manager.",
                    )
                ],
            )
        NagSuppressions.add_resource_suppressions(
            self.access_log_bucket,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="This bucket receives the ALB access logs; logging its own "
                    "accesses to another bucket would recurse.",
                )
            ],
        )
