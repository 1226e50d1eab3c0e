"""Monitoring: alarms to an SNS topic and a dashboard of the gateway's request metrics.

Alarms read the EMF metrics in `metrics.py` (namespace ClaudeCodeProxy, Service=ccproxy);
error and fallback rates are metric math over RequestCount.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from ccproxy_infra import metrics as m
from ccproxy_infra import settings as cfg
from ccproxy_infra.compute_stack import ComputeStack
from ccproxy_infra.data_stack import DataStack

FIVE_MINUTES = Duration.minutes(5)
ONE_MINUTE = Duration.minutes(1)

COST_BY_USER_QUERY = """fields @timestamp, user, provider, cost_usd
| filter event = "request_completed" and provider = "bedrock"
| stats sum(cost_usd) as bedrock_usd, sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens, count(*) as requests by user
| sort bedrock_usd desc"""


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: cfg.Settings,
        data: DataStack,
        compute: ComputeStack,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # SNS with a customer-managed key: CloudWatch cannot publish to a topic encrypted
        # with the AWS-managed aws/sns key, so it gets use of this one.
        topic_key = kms.Key(
            self,
            "AlarmTopicKey",
            alias="alias/ccproxy/alarms",
            description="ccproxy: alarm topic encryption",
            enable_key_rotation=True,
        )
        topic_key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="ccproxy alarms",
            master_key=topic_key,
            enforce_ssl=True,
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        action = cloudwatch_actions.SnsAction(self.topic)

        requests = m.metric(m.REQUEST_COUNT, label="Requests")
        latency_p95 = m.metric(m.REQUEST_LATENCY, statistic="p95", label="p95 latency (ms)")
        error_rate = m.rate_percent(m.ERROR_COUNT, label="Error rate (%)")
        fallback_rate = m.rate_percent(m.FALLBACK_COUNT, label="Fallback rate (%)")
        healthy_hosts = compute.target_group.metrics.healthy_host_count(statistic="Minimum", period=ONE_MINUTE)
        database_cpu = data.cluster.metric_cpu_utilization(period=FIVE_MINUTES)

        def alarm(construct_id: str, **props) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(self, construct_id, **props)
            created.add_alarm_action(action)
            created.add_ok_action(action)
            return created

        self.alarms = {
            "error_rate": alarm(
                "ErrorRateAlarm",
                alarm_description="ccproxy: 5xx and gateway errors above "
                f"{settings.error_rate_threshold_percent}% of requests",
                metric=error_rate,
                threshold=settings.error_rate_threshold_percent,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            "latency_p95": alarm(
                "LatencyP95Alarm",
                alarm_description=f"ccproxy: p95 request latency above {settings.latency_p95_threshold_ms:.0f} ms",
                metric=latency_p95,
                threshold=settings.latency_p95_threshold_ms,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            "fallback_rate": alarm(
                "FallbackRateAlarm",
                alarm_description="ccproxy: more than "
                f"{settings.fallback_rate_threshold_percent}% of requests fell back to Bedrock",
                metric=fallback_rate,
                threshold=settings.fallback_rate_threshold_percent,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            ),
            "healthy_hosts": alarm(
                "HealthyHostsAlarm",
                alarm_description=f"ccproxy: fewer than {cfg.MIN_TASKS} healthy tasks",
                metric=healthy_hosts,
                threshold=cfg.MIN_TASKS,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                # The ALB reports every minute; silence means something is badly wrong.
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            ),
            "database_cpu": alarm(
                "DatabaseCpuAlarm",
                alarm_description="ccproxy: Aurora CPU above 80%",
                metric=database_cpu,
                threshold=80,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                treat_missing_data=cloudwatch.TreatMissingData.MISSING,
            ),
        }

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"ccproxy-{Aws.REGION}",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests and errors",
                left=[requests, m.metric(m.ERROR_COUNT, label="Errors")],
                right=[error_rate],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Request latency (ms)",
                left=[
                    m.metric(m.REQUEST_LATENCY, statistic="p50", label="p50"),
                    latency_p95,
                    m.metric(m.REQUEST_LATENCY, statistic="p99", label="p99"),
                ],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=settings.latency_p95_threshold_ms, label="p95 alarm")
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Bedrock fallback and circuits",
                left=[
                    m.metric(m.FALLBACK_COUNT, label="Fallbacks"),
                    m.metric(m.CIRCUIT_OPEN, label="Circuits opened"),
                ],
                right=[fallback_rate],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Bedrock usage",
                left=[m.metric(m.BEDROCK_TOKENS_USED, label="Tokens")],
                right=[m.metric(m.BEDROCK_COST, label="Cost (USD)")],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Healthy tasks (ALB)",
                left=[healthy_hosts],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Service CPU / memory (%)",
                left=[
                    compute.service.metric_cpu_utilization(period=ONE_MINUTE),
                    compute.service.metric_memory_utilization(period=ONE_MINUTE),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Aurora CPU (%) and capacity (ACU)",
                left=[database_cpu],
                right=[data.cluster.metric("ServerlessDatabaseCapacity", statistic="Average", period=FIVE_MINUTES)],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=3),
            cloudwatch.LogQueryWidget(
                title="Bedrock cost by user (request_completed)",
                log_group_names=[compute.log_group.log_group_name],
                query_string=COST_BY_USER_QUERY,
                width=24,
            ),
        )

        CfnOutput(self, "AlarmTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name)
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home"
            f"?region={Aws.REGION}#dashboards:name={self.dashboard.dashboard_name}",
        )
