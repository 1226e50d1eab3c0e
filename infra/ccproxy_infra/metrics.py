"""The gateway's CloudWatch Embedded Metric Format contract, as alarms and widgets read it.

The gateway writes these in its `request_completed` JSON log lines (SPEC §9); the awslogs
driver ships the lines to the log group and CloudWatch turns them into metrics. One
dimension set, `[["Service"]]` with Service=ccproxy, keeps cardinality low on purpose.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

NAMESPACE = "ClaudeCodeProxy"
DIMENSIONS = {"Service": "ccproxy"}

REQUEST_COUNT = "RequestCount"  # Count
REQUEST_LATENCY = "RequestLatency"  # Milliseconds
ERROR_COUNT = "ErrorCount"  # Count; 5xx and gateway errors
FALLBACK_COUNT = "FallbackCount"  # Count
CIRCUIT_OPEN = "CircuitOpen"  # Count
BEDROCK_TOKENS_USED = "BedrockTokensUsed"  # Count
BEDROCK_COST = "BedrockCost"  # None (USD)

ALL = (
    REQUEST_COUNT,
    REQUEST_LATENCY,
    ERROR_COUNT,
    FALLBACK_COUNT,
    CIRCUIT_OPEN,
    BEDROCK_TOKENS_USED,
    BEDROCK_COST,
)


def metric(
    name: str,
    *,
    statistic: str = "Sum",
    period: Duration | None = None,
    label: str | None = None,
) -> cloudwatch.Metric:
    """A gateway metric with the Service=ccproxy dimension."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=DIMENSIONS,
        statistic=statistic,
        period=period or Duration.minutes(5),
        label=label,
    )


def rate_percent(numerator: str, *, label: str, period: Duration | None = None) -> cloudwatch.MathExpression:
    """100 × numerator / RequestCount, 0 when there were no requests.

    FILL: the numerator may have no data point in a period that had requests.
    """
    period = period or Duration.minutes(5)
    return cloudwatch.MathExpression(
        expression="IF(requests > 0, 100 * FILL(part, 0) / requests, 0)",
        using_metrics={
            "requests": metric(REQUEST_COUNT, period=period),
            "part": metric(numerator, period=period),
        },
        label=label,
        period=period,
    )
