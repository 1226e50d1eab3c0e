"""Deployment parameters, read once from CDK context (`-c name=value` or cdk.json).

Every parameter has a default that synthesizes, so `cdk synth` works with no context;
the placeholders (certificate, domain) must be replaced for a real deployment.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_logs as logs
from constructs import Node

INFRA_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = INFRA_DIR.parent

PLACEHOLDER_DOMAIN = "ccproxy.example.com"
# Resolves in whatever account/region the stack is deployed to; deploying with it fails
# at the HTTPS listener, which is the point: pass -c certificateArn=… for real use.
PLACEHOLDER_CERTIFICATE_ARN = (
    f"arn:{Aws.PARTITION}:acm:{Aws.REGION}:{Aws.ACCOUNT_ID}:certificate/00000000-0000-0000-0000-000000000000"
)

RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}

# Task shape and scaling (SPEC §10).
TASK_CPU = 512  # 0.5 vCPU
TASK_MEMORY_MIB = 1024
MIN_TASKS = 2
MAX_TASKS = 10
CONTAINER_PORT = 8000
# Fargate's maximum stop timeout; the gateway drains for a little less so it exits on
# its own (SPEC §9 SIGTERM) before ECS sends SIGKILL.
STOP_TIMEOUT_SECONDS = 120
DRAIN_SECONDS = 110
# Requests may run 10 minutes (SPEC §10); the ALB maximum is 4000 s.
ALB_IDLE_TIMEOUT_SECONDS = 900

DB_NAME = "ccproxy"
DB_USER = "ccproxy"
DB_MIN_ACU = 0.5
DB_MAX_ACU = 4
DB_BACKUP_DAYS = 7


class SettingsError(ValueError):
    """A context parameter is invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    certificate_arn: str
    domain_name: str
    image_uri: str | None
    alarm_email: str | None
    log_retention_days: int
    nat_gateways: int
    latency_p95_threshold_ms: float
    error_rate_threshold_percent: float
    fallback_rate_threshold_percent: float

    @property
    def log_retention(self) -> logs.RetentionDays:
        return RETENTION[self.log_retention_days]

    @classmethod
    def from_node(cls, node: Node) -> Settings:
        """Read and validate every context parameter; raise SettingsError naming it."""

        def get(name: str, default: Any) -> Any:
            value = node.try_get_context(name)
            return default if value is None or value == "" else value

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = get(name, default)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise SettingsError(f"{name}={raw!r}: must be a number") from None
            if not lo <= value <= hi:
                raise SettingsError(f"{name}={raw!r}: must be between {lo} and {hi}")
            return value

        certificate_arn = str(get("certificateArn", PLACEHOLDER_CERTIFICATE_ARN))
        if not certificate_arn.startswith(("arn:", "${Token")):
            raise SettingsError(f"certificateArn={certificate_arn!r}: must be an ACM ARN")
        domain_name = str(get("domainName", PLACEHOLDER_DOMAIN))
        if not re.fullmatch(r"[A-Za-z0-9.-]+", domain_name):
            raise SettingsError(f"domainName={domain_name!r}: must be a host name")
        retention = int(number("logRetentionDays", 30, 1, 731))
        if retention not in RETENTION:
            raise SettingsError(f"logRetentionDays={retention}: must be one of {sorted(RETENTION)}")
        return cls(
            certificate_arn=certificate_arn,
            domain_name=domain_name,
            image_uri=get("imageUri", None),
            alarm_email=get("alarmEmail", None),
            log_retention_days=retention,
            nat_gateways=int(number("natGateways", 2, 1, 2)),
            latency_p95_threshold_ms=number("latencyP95ThresholdMs", 120_000, 1, 3_600_000),
            error_rate_threshold_percent=number("errorRateThresholdPercent", 5, 0.01, 100),
            fallback_rate_threshold_percent=number("fallbackRateThresholdPercent", 25, 0.01, 100),
        )


def cdk_json_context() -> dict[str, Any]:
    """The feature flags in infra/cdk.json, so `python infra/app.py` and the tests
    synthesize exactly what `cdk synth` run from infra/ does (CLI context still wins)."""
    data = json.loads((INFRA_DIR / "cdk.json").read_text())
    return dict(data.get("context", {}))
