"""Secrets & Database: KMS keys, Aurora PostgreSQL Serverless v2 and the gateway's secrets.

The gateway reads CCPROXY_DATABASE_URL as one postgresql:// URL, but Aurora's generated
secret is JSON (username, password, host, …). Choice: a second secret, `DatabaseUrl`,
whose value CloudFormation assembles at deploy time from a dynamic reference to the
generated password (`{{resolve:secretsmanager:…:password}}`), so the password never
appears in the template and ECS injects the URL unchanged. Rotation is off (seed:
"auto-rotation disabled"); if the password is ever changed, redeploy this stack to
rebuild the URL secret, then force a new deployment of the service.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagSuppressions
from constructs import Construct

from ccproxy_infra import settings as cfg
from ccproxy_infra.network_stack import NetworkStack

ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_15_12

# Characters that need escaping in a URL's user-info part are never generated, so the
# assembled postgresql:// URL needs no percent-encoding.
PASSWORD_EXCLUDED_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\^=,"


class DataStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: cfg.Settings,
        network: NetworkStack,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = network.vpc

        self.database_key = kms.Key(
            self,
            "DatabaseKey",
            alias="alias/ccproxy/database",
            description="ccproxy: Aurora storage and Performance Insights encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Envelope encryption of the Bedrock credentials stored per access key (SPEC §4):
        # the gateway asks KMS for data keys; only its task role may use this key.
        self.bedrock_key = kms.Key(
            self,
            "BedrockKeysKey",
            alias="alias/ccproxy/bedrock-keys",
            description="ccproxy: envelope encryption of stored Bedrock credentials",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        engine = rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION)
        parameter_group = rds.ParameterGroup(
            self,
            "ClusterParameters",
            engine=engine,
            description="ccproxy Aurora PostgreSQL 15: TLS required",
            parameters={"rds.force_ssl": "1"},
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Database",
            engine=engine,
            parameter_group=parameter_group,
            credentials=rds.Credentials.from_generated_secret(
                cfg.DB_USER, exclude_characters=PASSWORD_EXCLUDED_CHARACTERS
            ),
            default_database_name=cfg.DB_NAME,
            serverless_v2_min_capacity=cfg.DB_MIN_ACU,
            serverless_v2_max_capacity=cfg.DB_MAX_ACU,
            # Multi-AZ: the writer in the first AZ, a reader in the second that scales
            # with it so a failover lands on an instance already sized for the load.
            writer=rds.ClusterInstance.serverless_v2(
                "Writer",
                availability_zone=vpc.availability_zones[0],
                publicly_accessible=False,
                enable_performance_insights=True,
                performance_insight_encryption_key=self.database_key,
            ),
            readers=[
                rds.ClusterInstance.serverless_v2(
                    "Reader",
                    scale_with_writer=True,
                    availability_zone=vpc.availability_zones[1],
                    publicly_accessible=False,
                    enable_performance_insights=True,
                    performance_insight_encryption_key=self.database_key,
                )
            ],
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[network.database_security_group],
            port=5432,
            storage_encrypted=True,
            storage_encryption_key=self.database_key,
            backup=rds.BackupProps(retention=Duration.days(cfg.DB_BACKUP_DAYS), preferred_window="03:00-04:00"),
            preferred_maintenance_window="Sun:04:30-Sun:05:30",
            iam_authentication=True,
            deletion_protection=True,
            copy_tags_to_snapshot=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        assert self.cluster.secret is not None  # from_generated_secret always makes one
        self.database_secret = self.cluster.secret

        password = self.database_secret.secret_value_from_json("password").unsafe_unwrap()
        self.database_url_secret = secretsmanager.Secret(
            self,
            "DatabaseUrl",
            description="ccproxy: CCPROXY_DATABASE_URL (built from the Aurora secret)",
            secret_string_value=SecretValue.unsafe_plain_text(
                f"postgresql://{cfg.DB_USER}:{password}@"
                f"{self.cluster.cluster_endpoint.socket_address}/{cfg.DB_NAME}"
                "?sslmode=require"
            ),
        )

        # Generated, never seen by a person: HMAC secret for access keys, JWT signing key.
        self.key_hash_secret = secretsmanager.Secret(
            self,
            "KeyHashSecret",
            description="ccproxy: CCPROXY_KEY_HASH_SECRET (HMAC of access keys)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        self.jwt_secret = secretsmanager.Secret(
            self,
            "JwtSecret",
            description="ccproxy: CCPROXY_JWT_SECRET (admin API tokens)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        # Set by the operator after deploy (infra/README.md): a bcrypt hash cannot be
        # generated by CloudFormation. Empty means "no bootstrap admin from the env".
        self.admin_secret = secretsmanager.Secret(
            self,
            "AdminCredentials",
            description="ccproxy: CCPROXY_ADMIN_USERNAME / CCPROXY_ADMIN_PASSWORD_HASH",
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps({"username": "admin", "password_hash": ""})),
        )
        # Optional organisation Anthropic API key (org mode); empty means not used.
        self.plan_key_secret = secretsmanager.Secret(
            self,
            "PlanApiKey",
            description="ccproxy: CCPROXY_PLAN_API_KEY (optional org plan key)",
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps({"api_key": ""})),
        )

        for output_id, value, description in (
            ("DatabaseEndpoint", self.cluster.cluster_endpoint.hostname, "Aurora writer"),
            ("DatabaseSecretArn", self.database_secret.secret_arn, "Aurora credentials"),
            ("DatabaseUrlSecretArn", self.database_url_secret.secret_arn, "postgresql URL"),
            ("AdminSecretArn", self.admin_secret.secret_arn, "admin username/hash"),
            ("PlanApiKeySecretArn", self.plan_key_secret.secret_arn, "org plan key"),
            ("BedrockKmsKeyArn", self.bedrock_key.key_arn, "Bedrock-key envelope key"),
        ):
            CfnOutput(self, output_id, value=value, description=description)

        self._suppress_nag()

    def _suppress_nag(self) -> None:
        NagSuppressions.add_resource_suppressions(
            [
                self.cluster,  # its generated credentials secret is a child
                self.database_url_secret,
                self.key_hash_secret,
                self.jwt_secret,
                self.admin_secret,
                self.plan_key_secret,
            ],
            [
                {
                    "id": "AwsSolutions-SMG4",
                    "reason": "Rotation is off by design (seed: auto-rotation disabled). "
                    "Rotating the key-hash secret would invalidate every issued access "
                    "key; the database URL secret is derived from the Aurora secret at "
                    "deploy time; the admin and plan-key secrets are set by the operator.",
                }
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.cluster,
            [
                {
                    "id": "AwsSolutions-RDS11",
                    "reason": "Default port 5432 kept: the database is in isolated subnets "
                    "and reachable only from the gateway's security group; a non-default "
                    "port adds no protection there.",
                }
            ],
            apply_to_children=True,
        )
