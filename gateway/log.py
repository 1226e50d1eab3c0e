"""Structured JSON logs on stdout (structlog + orjson), with secrets redacted, and the
request metrics as CloudWatch Embedded Metric Format inside the `request_completed` line.

EMF: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any, BinaryIO, cast

import orjson
import structlog

NAMESPACE = "ClaudeCodeProxy"
SERVICE = "ccproxy"
# One low-cardinality dimension set: the alarms and the dashboard use exactly this.
DIMENSIONS = [["Service"]]
REQUEST_METRICS = [
    {"Name": "RequestCount", "Unit": "Count"},
    {"Name": "RequestLatency", "Unit": "Milliseconds"},
    {"Name": "ErrorCount", "Unit": "Count"},
    {"Name": "FallbackCount", "Unit": "Count"},
    {"Name": "BedrockTokensUsed", "Unit": "Count"},
    {"Name": "BedrockCost", "Unit": "None"},
]
CIRCUIT_METRICS = [{"Name": "CircuitOpen", "Unit": "Count"}]

_SECRET_FIELD = re.compile(r"(authorization|api[_-]?key|token|secret|password|credential)", re.I)
_SECRET_VALUE = re.compile(r"(ak_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}|sk-ant-[A-Za-z0-9_-]{4,}|Bearer\s+\S+")
_SAFE_FIELDS = frozenset({"key", "key_prefix", "error_class", "token_count"})


def _mask_value(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + "…"
    return "[redacted]"


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a full access key, a plan credential or a Bedrock key reach a log line."""
    for field, value in event.items():
        if field in _SAFE_FIELDS or field.endswith("_tokens"):
            if isinstance(value, str) and ("ak_" in value or "sk-" in value):
                event[field] = _SECRET_VALUE.sub(_mask_value, value)
            continue
        if _SECRET_FIELD.search(field) and value is not None and not isinstance(value, bool | int):
            event[field] = "[redacted]"
        elif isinstance(value, str) and ("ak_" in value or "sk-" in value or "Bearer" in value):
            event[field] = _SECRET_VALUE.sub(_mask_value, value)
    return event


def configure(level: str = "info", stream: Any = None) -> None:
    """Configure structlog once: JSON lines, ISO timestamps, contextvars first, redaction."""
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.BytesLoggerFactory(cast(BinaryIO, getattr(out, "buffer", out))),
        cache_logger_on_first_use=True,
    )


def emf(metrics: list[dict[str, str]], values: dict[str, Any]) -> dict[str, Any]:
    """The EMF fields to merge into a log line: metadata plus the metric values."""
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": DIMENSIONS, "Metrics": metrics}],
        },
        "Service": SERVICE,
        **values,
    }
