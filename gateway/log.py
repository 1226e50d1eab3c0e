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
_SECRET_VALUE = re.compile(r"(ak_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}|sk-ant-[A-Za-z0-9_-]{4,}|\bBearer\s+\S+", re.I)
_SAFE_FIELDS = frozenset({"key_prefix", "error_class", "token_count"})
_MARKERS = ("ak_", "sk-", "bearer", "Bearer", "BEARER")


def _mask_value(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + "…"
    return "[redacted]"


def _scrub(value: Any) -> Any:
    """Mask key-, token- and bearer-shaped text anywhere inside a value."""
    if isinstance(value, str):
        if any(m in value for m in _MARKERS):
            return _SECRET_VALUE.sub(_mask_value, value)
        return value
    if isinstance(value, dict):
        return {k: "[redacted]" if _secret_name(k, v) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _secret_name(field: Any, value: Any) -> bool:
    return (
        isinstance(field, str)
        and field not in _SAFE_FIELDS
        and not field.endswith("_tokens")
        and _SECRET_FIELD.search(field) is not None
        and value is not None
        and not isinstance(value, bool | int | float)
    )


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a full access key, a plan credential or a Bedrock key reach a log line:
    secret-named fields are dropped, and key-shaped text is masked at any depth,
    exception text included (this runs after the traceback is formatted)."""
    for field, value in event.items():
        if _secret_name(field, value):
            event[field] = "[redacted]"
        elif value.__class__ is not int and value.__class__ is not float and value is not None:
            event[field] = _scrub(value)
    return event


def configure(level: str = "info", stream: Any = None) -> None:
    """Configure structlog once: JSON lines, ISO timestamps, contextvars first, redaction."""
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            redact,
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
