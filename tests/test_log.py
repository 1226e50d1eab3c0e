"""Structured logs: one `request_completed` line per request, secrets redacted, and the
metrics as CloudWatch Embedded Metric Format inside that line (SPEC §9)."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from bench.fake_anthropic import FakeAnthropic
from gateway import keys, log

PROMPT = "PROMPT-TEXT-that-must-never-be-logged-4711"
PLAN_KEY = "sk-ant-api03-PlanCredentialThatMustNotLeak_0123456789"
PLAN_OAUTH = "sk-ant-oat01-OAuthTokenThatMustNotLeak_0123456789"
BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{"role": "user", "content": PROMPT}]}
ANSWER_PIECES = ("Hello from the fake upstream.", " the fake", "Let me check.", "The answer")

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
EMF_UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}
REQUEST_METRICS = {"RequestCount", "RequestLatency", "ErrorCount", "FallbackCount", "BedrockTokensUsed", "BedrockCost"}


def emf_problems(doc: dict[str, Any]) -> list[str]:
    """Everything that makes `doc` an invalid EMF document (empty when valid)."""
    problems: list[str] = []
    aws = doc.get("_aws")
    if not isinstance(aws, dict):
        return ["_aws missing or not an object"]
    stamp = aws.get("Timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
        problems.append("_aws.Timestamp must be a non-negative integer (ms since epoch)")
    directives = aws.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "_aws.CloudWatchMetrics must be a non-empty list"]
    for directive in directives:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 1024:
            problems.append("Namespace must be a non-empty string")
        dimensions = directive.get("Dimensions")
        if not isinstance(dimensions, list):
            problems.append("Dimensions must be a list of dimension sets")
            dimensions = []
        for dimension_set in dimensions:
            if not isinstance(dimension_set, list) or len(dimension_set) > 30:
                problems.append(f"dimension set {dimension_set!r} must be a list of at most 30 names")
                continue
            for name in dimension_set:
                if not isinstance(name, str) or not isinstance(doc.get(name), str):
                    problems.append(f"dimension {name!r} must name a top-level string member")
                elif not 1 <= len(doc[name]) <= 1024:
                    problems.append(f"dimension value {name!r} must be 1-1024 characters")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or not 1 <= len(metrics) <= 100:
            problems.append("Metrics must be a list of 1-100 metric definitions")
            metrics = []
        for metric in metrics:
            name = metric.get("Name") if isinstance(metric, dict) else None
            if not isinstance(name, str) or not 1 <= len(name) <= 1024:
                problems.append(f"metric definition {metric!r} needs a Name")
                continue
            value = doc.get(name)
            values = value if isinstance(value, list) else [value]
            if not values or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
            ):
                problems.append(f"metric {name!r} must name a top-level numeric member (got {value!r})")
            if "Unit" in metric and metric["Unit"] not in EMF_UNITS:
                problems.append(f"metric {name!r} has unit {metric['Unit']!r}, not an EMF unit")
            if "StorageResolution" in metric and metric["StorageResolution"] not in (1, 60):
                problems.append(f"metric {name!r} StorageResolution must be 1 or 60")
    return problems


class LogCapture:
    """The JSON lines the gateways logged during one test.

    conftest.py configures structlog at import; a test module importing `tests.conftest`
    imports it a second time, with a second capture buffer, and the gateways' loggers then
    write to that one. Read (and clear) both, so these tests see every line either way.
    """

    def __init__(self, captures: list[Any]) -> None:
        self.captures = captures

    def lines(self) -> list[dict[str, Any]]:
        return [line for capture in self.captures for line in capture.lines()]

    def text(self) -> str:
        return "".join(capture.text() for capture in self.captures)


@pytest.fixture
def logs(logs: Any) -> LogCapture:
    captures = [logs]
    for name in ("conftest", "tests.conftest"):
        module = sys.modules.get(name)
        if module is not None and all(module.LOGS is not c for c in captures):
            module.LOGS.data.clear()
            captures.append(module.LOGS)
    return LogCapture(captures)


def completed(capture: LogCapture) -> list[dict[str, Any]]:
    return [line for line in capture.lines() if line.get("event") == "request_completed"]


async def wait_for_lines(capture: LogCapture, n: int, within: float = 2.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while len(completed(capture)) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return completed(capture)


# --- the validator itself --------------------------------------------------------------------


def test_the_emf_validator_accepts_the_spec_example_and_rejects_broken_documents() -> None:
    good = {
        "_aws": {
            "Timestamp": 1574109732004,
            "CloudWatchMetrics": [
                {
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{"Name": "time", "Unit": "Milliseconds", "StorageResolution": 60}],
                }
            ],
        },
        "functionVersion": "$LATEST",
        "time": 100,
        "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
    }
    assert emf_problems(good) == []
    broken = orjson.loads(orjson.dumps(good))
    broken["_aws"]["Timestamp"] = "2019-11-18T20:42:12Z"
    broken["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = [["missing"]]
    broken["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "Dollars"
    broken["time"] = "100"
    assert len(emf_problems(broken)) == 4


# --- request_completed lines ---------------------------------------------------------------------


async def test_one_request_completed_line_per_request_without_secrets_or_bodies(
    gateway: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, logs: LogCapture
) -> None:
    key = (await gateway.issue_key("alice"))["key"]
    request_ids = []
    cases = [
        ({"x-api-key": PLAN_KEY}, False, "text"),
        ({"x-api-key": PLAN_KEY}, True, "text"),
        ({"authorization": f"Bearer {PLAN_OAUTH}"}, True, "tool_use"),
        ({"authorization": f"Bearer {PLAN_OAUTH}"}, False, "thinking"),
        ({"x-api-key": PLAN_KEY}, True, "status:500"),
    ]
    for headers, stream, scenario in cases:
        fake[0].queue(scenario)
        body = orjson.dumps({**BODY, "stream": stream})
        async with http.post(
            f"{gateway.url}/ak/{key}/v1/messages",
            data=body,
            headers={**headers, "anthropic-version": "2023-06-01", "x-claude-code-session-id": "sess-42"},
        ) as resp:
            await resp.read()
            request_ids.append(resp.headers["x-ccproxy-request-id"])
    lines = await wait_for_lines(logs, len(cases))
    assert sorted(line["request_id"] for line in lines) == sorted(request_ids)

    text = logs.text()
    assert key not in text
    assert key[9:20] not in text
    assert PLAN_KEY not in text and PLAN_KEY[14:] not in text
    assert PLAN_OAUTH not in text and PLAN_OAUTH[14:] not in text
    assert PROMPT not in text
    for piece in ANSWER_PIECES:
        assert piece not in text
    for line in lines:
        assert line["key_prefix"] == key[:9] + "…"
        assert line["user"] == "alice"
        assert line["level"] == "info"
        assert "ts" in line


async def test_request_completed_carries_the_documented_fields(
    gateway: Any, http: aiohttp.ClientSession, logs: LogCapture
) -> None:
    key = (await gateway.issue_key("alice"))["key"]
    async with http.post(
        f"{gateway.url}/ak/{key}/v1/messages",
        data=orjson.dumps({**BODY, "stream": True}),
        headers={"x-api-key": PLAN_KEY, "x-claude-code-session-id": "sess-7"},
    ) as resp:
        await resp.read()
        request_id = resp.headers["x-ccproxy-request-id"]
    (line,) = await wait_for_lines(logs, 1)
    for field in (
        "request_id",
        "key_prefix",
        "user",
        "provider_attempted",
        "provider",
        "fallback",
        "status",
        "error_class",
        "model",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "ttfb_ms",
    ):
        assert field in line, field
    assert line["request_id"] == request_id
    assert (line["provider"], line["fallback"], line["status"], line["error_class"]) == ("plan", False, 200, None)
    assert (line["input_tokens"], line["output_tokens"]) == (25, 12)
    assert line["model"] == BODY["model"]
    assert line["latency_ms"] >= line["ttfb_ms"] >= 0


async def test_the_metrics_are_valid_emf_in_the_same_line(
    gateway: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, logs: LogCapture
) -> None:
    key = (await gateway.issue_key("alice"))["key"]
    for scenario in ("text", "status:529"):
        fake[0].queue(scenario)
        async with http.post(
            f"{gateway.url}/ak/{key}/v1/messages", data=orjson.dumps(BODY), headers={"x-api-key": PLAN_KEY}
        ) as resp:
            await resp.read()
    lines = await wait_for_lines(logs, 2)
    now_ms = int(time.time() * 1000)
    for line in lines:
        assert emf_problems(line) == []
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "ClaudeCodeProxy"
        assert ["Service"] in directive["Dimensions"]
        assert line["Service"] == "ccproxy"
        assert {m["Name"] for m in directive["Metrics"]} >= REQUEST_METRICS
        assert abs(line["_aws"]["Timestamp"] - now_ms) < 60_000
        assert line["RequestCount"] == 1
        assert line["RequestLatency"] > 0
    ok, failed = sorted(lines, key=lambda line: line["status"])
    assert (ok["status"], ok["ErrorCount"]) == (200, 0)
    assert (failed["status"], failed["ErrorCount"]) == (529, 1)


async def test_an_unknown_key_is_logged_masked(gateway: Any, http: aiohttp.ClientSession, logs: LogCapture) -> None:
    unknown = keys.generate()
    async with http.post(
        f"{gateway.url}/ak/{unknown}/v1/messages", data=orjson.dumps(BODY), headers={"x-api-key": PLAN_KEY}
    ) as resp:
        assert resp.status == 404
        await resp.read()
    (line,) = await wait_for_lines(logs, 1)
    assert line["key_prefix"] == unknown[:9] + "…"
    assert line["status"] == 404
    assert unknown not in logs.text()
    assert emf_problems(line) == []


async def test_org_mode_keys_are_masked_too(gateway: Any, http: aiohttp.ClientSession, logs: LogCapture) -> None:
    key = (await gateway.issue_key("alice"))["key"]
    async with http.post(f"{gateway.url}/v1/messages", data=orjson.dumps(BODY), headers={"x-api-key": key}) as resp:
        await resp.read()
    async with http.post(
        f"{gateway.url}/v1/messages", data=orjson.dumps(BODY), headers={"authorization": f"Bearer {key}"}
    ) as resp:
        await resp.read()
    lines = await wait_for_lines(logs, 2)
    assert len(lines) == 2
    assert key not in logs.text()
    assert all(line["key_prefix"] == key[:9] + "…" for line in lines)


# --- the redact processor -------------------------------------------------------------------------

FULL_KEY = "ak_" + "Q" * 6 + "abcdefghijklmnopqrstuvwxyz0123456789ABCDE"


@pytest.mark.parametrize(
    ("field", "value", "secret"),
    [
        ("message", f"lookup failed for {FULL_KEY}", FULL_KEY[9:]),
        ("path", f"/ak/{FULL_KEY}/v1/messages?beta=true", FULL_KEY[9:]),
        ("key", FULL_KEY, FULL_KEY[9:]),
        ("key_prefix", FULL_KEY, FULL_KEY[9:]),
        ("detail", f"x-api-key: {PLAN_KEY}", PLAN_KEY[7:]),
        ("detail", f"authorization: Bearer {PLAN_OAUTH}", PLAN_OAUTH[7:]),
        ("detail", "authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature", "eyJhbGciOiJIUzI1NiJ9"),
        ("detail", "authorization: bearer eyJhbGciOiJIUzI1NiJ9.payload.signature", "eyJhbGciOiJIUzI1NiJ9"),
        ("authorization", "Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("x_api_key", "some-non-anthropic-key-123", "some-non-anthropic-key-123"),
        ("plan_api_key", "opaque-value-456", "opaque-value-456"),
        ("bedrock_api_key", "ABSKQmVkcm9ja0FQSUtleS1hYmNk", "ABSKQmVkcm9ja0FQSUtleS1hYmNk"),
        ("secret", "hunter2", "hunter2"),
    ],
)
def test_redact_masks_secrets_in_any_top_level_field(field: str, value: str, secret: str) -> None:
    event = log.redact(None, "info", {"event": "something", field: value})
    assert secret not in orjson.dumps(dict(event)).decode()
    if FULL_KEY in value:
        assert FULL_KEY[:9] + "…" in event[field]


@pytest.mark.parametrize(
    "value",
    [
        {"headers": {"authorization": f"Bearer {PLAN_OAUTH}"}},
        {"headers": {"x-api-key": PLAN_KEY}},
        {"urls": [f"/ak/{FULL_KEY}/v1/messages"]},
    ],
    ids=["nested-authorization", "nested-api-key", "key-in-list"],
)
def test_redact_masks_secrets_nested_in_structured_fields(value: dict[str, Any]) -> None:
    event = log.redact(None, "info", {"event": "something", **value})
    text = orjson.dumps(dict(event)).decode()
    for secret in (PLAN_OAUTH[7:], PLAN_KEY[7:], FULL_KEY[9:]):
        assert secret not in text


def test_redact_keeps_ordinary_fields() -> None:
    fields = {
        "event": "request_completed",
        "status": 200,
        "input_tokens": 25,
        "cache_read_input_tokens": 3000,
        "token_count": 7,
        "error_class": "rate_limit",
        "model": "claude-sonnet-4-5-20250929",
        "fallback": False,
        "key_prefix": "ak_abcdef…",
    }
    assert dict(log.redact(None, "info", dict(fields))) == fields


async def test_secrets_in_logged_exceptions_are_masked(logs: LogCapture) -> None:
    logger = structlog.get_logger("tests.log")
    try:
        raise RuntimeError(f"upstream refused {PLAN_KEY} for /ak/{FULL_KEY}/v1/messages")
    except RuntimeError:
        logger.exception("boom")
    text = logs.text()
    assert "boom" in text
    assert PLAN_KEY[7:] not in text
    assert FULL_KEY[9:] not in text


def test_emf_helper_builds_a_valid_document() -> None:
    fields = log.emf(
        log.REQUEST_METRICS,
        {
            "RequestCount": 1,
            "RequestLatency": 12.5,
            "ErrorCount": 0,
            "FallbackCount": 0,
            "FallbackFailedCount": 0,
            "BedrockTokensUsed": 0,
            "BedrockCost": 0.0,
        },
    )
    doc = orjson.loads(orjson.dumps(fields))  # as the line is written (the directive is pre-rendered)
    assert emf_problems(doc) == []
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ClaudeCodeProxy"
    assert {m["Name"] for m in log.CIRCUIT_METRICS} == {"CircuitOpen"}
    assert all(m["Unit"] in EMF_UNITS for m in [*log.REQUEST_METRICS, *log.CIRCUIT_METRICS])
