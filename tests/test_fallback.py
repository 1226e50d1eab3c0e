"""Bedrock fallback through an in-process gateway (SPEC §3, §4, §5): every row of the plan
outcome classification, streaming and not, against the fake Anthropic plan and the fake
Bedrock runtime over real HTTP, with usage rows read back from PostgreSQL.

The fake Bedrock answers with the fake Anthropic's messages; here its text is changed to
"Hello from the fake Bedrock." so an answer that came from Bedrock is unmistakable.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from anthropic import AsyncAnthropic
from conftest import Gateway, LogCapture, cli_env, free_port, make_config, run_cli, start_site
from connect_proxy import ConnectProxy

from bench import fake_bedrock
from bench.fake_anthropic import ERRORS, USAGE_LIMIT_MESSAGE, FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, keys, server

PLAN_CREDENTIAL = "sk-ant-plan-credential-fallback-test"
PLAN_HEADERS = {"x-api-key": PLAN_CREDENTIAL, "anthropic-version": "2023-06-01"}
MODEL = "claude-sonnet-4-5-20250929"
SONNET_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
BEDROCK_TEXT = "Hello from the fake Bedrock."
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
# The fake Bedrock's `text` answer: 25 input and 12 output tokens. claude-sonnet-4-5 in
# the shipped price table: $3 input / $15 output per million tokens.
TEXT_COST = Decimal(25) * 3 / 10**6 + Decimal(12) * 15 / 10**6  # 0.000075 + 0.000180
TIMEOUT_SETTINGS = {"plan_first_byte_timeout": "0.4", "plan_nonstream_timeout": "0.4"}
_IDS = re.compile(rb"msg_fake\d{8}")

_original_events = fake_bedrock.bedrock_events
_original_message = fake_bedrock.message_json


def _bedrock_events(kind: str, model: str, n: int = 3) -> list[bytes]:
    return [e.replace(b'"text":" upstream."', b'"text":" Bedrock."') for e in _original_events(kind, model, n)]


def _bedrock_message(kind: str, model: str) -> dict[str, Any]:
    message = _original_message(kind, model)
    for block in message["content"]:
        if block.get("text") == "Hello from the fake upstream.":
            block["text"] = BEDROCK_TEXT
    return message


@pytest.fixture(autouse=True)
def distinct_bedrock_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_bedrock, "bedrock_events", _bedrock_events)
    monkeypatch.setattr(fake_bedrock, "message_json", _bedrock_message)


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start(gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock) -> Start:
    """A gateway on the fake plan (or `plan_url`) whose Bedrock endpoint is the fake Bedrock."""

    async def go(plan_url: str | None = None, **settings: str) -> Gateway:
        settings.setdefault("bedrock_endpoint_url", bedrock.url)  # type: ignore[attr-defined]
        return await gateway_factory(plan_url or fake[1], **settings)  # type: ignore[no-any-return]

    return go


async def key_with_bedrock(gw: Gateway, bedrock: FakeBedrock, user: str = "dev", **kwargs: Any) -> dict[str, Any]:
    issued = await gw.issue_key(user, **kwargs)
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    return issued


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=data, headers={**PLAN_HEADERS, **(headers or {})}) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


def bedrock_sse(kind: str, model: str) -> bytes:
    """The Anthropic SSE the gateway must emit for the fake Bedrock's stream of `kind`."""
    return b"".join(
        b"event: " + orjson.loads(data)["type"].encode() + b"\ndata: " + data + b"\n\n"
        for data in fake_bedrock.bedrock_events(kind, model)
    )


def same_ids(data: bytes) -> bytes:
    return _IDS.sub(b"msg_X", data)


def check_bedrock_answer(stream: bool, body: bytes, model_id: str = SONNET_ID, kind: str = "text") -> None:
    model = fake_bedrock.anthropic_model(model_id)
    if stream:
        assert same_ids(body) == same_ids(bedrock_sse(kind, model))
    else:
        message = orjson.loads(body)
        expected = fake_bedrock.message_json(kind, model)
        message.pop("id"), expected.pop("id")
        assert message == expected


def completed(logs: LogCapture) -> list[dict[str, Any]]:
    return [line for line in logs.lines() if line.get("event") == "request_completed"]


def assert_no_secrets(logs: LogCapture, *more: str) -> None:
    text = logs.text()
    for secret in (PLAN_CREDENTIAL, *more):
        assert secret not in text


def assert_no_leaked_connections(gw: Gateway) -> None:
    relay = gw.app[server.RELAY]
    assert relay.session.connector is not None
    assert not relay.session.connector._acquired, "a Bedrock response was neither read to the end nor closed"
    assert relay.plan.in_use == 0, "a plan response was neither released nor closed"


def check_fallback_row(
    row: dict[str, Any],
    *,
    stream: bool,
    model_id: str = SONNET_ID,
    tokens: tuple[int, int] = (25, 12),
    cost: Decimal = TEXT_COST,
    endpoint: str = "messages",
) -> None:
    assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == ("bedrock", True, 200, None)
    assert (row["endpoint"], row["stream"], row["upstream_model"]) == (endpoint, stream, model_id)
    assert (row["input_tokens"], row["output_tokens"]) == tokens
    assert row["cost_usd"] == cost and row["cost_usd"] > 0
    snapshot = row["price_snapshot"]
    assert snapshot is not None and set(snapshot) >= {"model", "region", "input", "output", "effective_date"}
    if model_id == SONNET_ID:
        assert (snapshot["model"], Decimal(snapshot["input"]), Decimal(snapshot["output"])) == (
            "claude-sonnet-4-5",
            3,
            15,
        )
    assert row["ttfb_ms"] is not None and row["latency_ms"] >= row["ttfb_ms"]


# --- SPEC §3's classification table ------------------------------------------------------------

FALLBACK_ROWS = [
    pytest.param("usage_limit", "usage_limit", id="429-usage-limit"),
    pytest.param("status:429", "rate_limit", id="429-rate-limit"),
    pytest.param("status:500", "server_error", id="500"),
    pytest.param("status:502", "server_error", id="502"),
    pytest.param("status:503", "server_error", id="503"),
    pytest.param("status:529", "server_error", id="529"),
    pytest.param("invalid_json", "server_error", id="200-invalid-json"),
    pytest.param("slow_headers:1.2", "timeout", id="timeout"),
    pytest.param("reset", "network_error", id="connection-reset"),
    pytest.param("unreachable", "network_error", id="unreachable"),
]


async def plan_for(start: Start, fake: FakeAnthropic, scenario: str) -> Gateway:
    if scenario == "unreachable":
        return await start(f"http://127.0.0.1:{free_port()}", **TIMEOUT_SETTINGS)
    fake.queue(scenario)
    return await start(**TIMEOUT_SETTINGS)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("scenario", "outcome"), FALLBACK_ROWS)
async def test_retryable_plan_failure_is_answered_by_bedrock(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    scenario: str,
    outcome: str,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await plan_for(start, upstream, scenario)
    key = (await key_with_bedrock(gw, bedrock))["key"]

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages?beta=true", {**BODY, "stream": stream})

    assert status == 200, body
    assert headers["x-ccproxy-provider"] == "bedrock"
    assert "x-ccproxy-fallback" not in headers
    assert headers["content-type"].startswith("text/event-stream" if stream else "application/json")
    check_bedrock_answer(stream, body)
    assert len(upstream.requests) == (0 if scenario == "unreachable" else 1)
    [seen] = bedrock.requests  # exactly one Bedrock call: never retried
    action = "invoke-with-response-stream" if stream else "invoke"
    assert seen.path == f"/model/{SONNET_ID}/{action}"

    [row] = await gw.usage_rows()
    check_fallback_row(row, stream=stream)
    assert str(row["request_id"]) == headers["x-ccproxy-request-id"]
    assert row["model"] == MODEL
    [line] = completed(logs)
    assert (line["plan_outcome"], line["provider"], line["fallback"]) == (outcome, "bedrock", True)
    assert_no_leaked_connections(gw)
    assert_no_secrets(logs, bedrock.api_key)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("scenario", "outcome"), FALLBACK_ROWS)
async def test_without_bedrock_the_plans_own_error_is_relayed_marked_unavailable(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    scenario: str,
    outcome: str,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await plan_for(start, upstream, scenario)
    key = (await gw.issue_key("dev"))["key"]

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": stream})

    assert headers["x-ccproxy-fallback"] == "unavailable"
    assert not bedrock.requests
    kind, _, arg = scenario.partition(":")
    if kind in ("usage_limit", "status"):
        code = 429 if kind == "usage_limit" else int(arg)
        error_type, message = ("rate_limit_error", USAGE_LIMIT_MESSAGE) if kind == "usage_limit" else ERRORS[code]
        assert status == code
        # byte for byte what the plan sent: Claude Code's recovery reads this wording
        assert body == orjson.dumps(
            {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fakeerror"}
        )
        assert headers["request-id"] == "req_fakeerror"
        assert headers["x-ccproxy-provider"] == "plan"
        if code == 429:
            assert headers["retry-after"] == "7"
    elif kind == "invalid_json":
        assert (status, body) == (200, b'{"id": "msg_broken", "content": [')
    else:  # nothing came from the plan: the gateway's own error, in Anthropic's shape
        assert status == 502, body
        error = orjson.loads(body)
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
        assert error["request_id"] == headers["x-ccproxy-request-id"]
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["status"]) == ("plan", False, status)
    assert row["error_class"] == outcome
    assert row["cost_usd"] == 0 and row["price_snapshot"] is None
    [line] = completed(logs)
    assert (line["plan_outcome"], line["fallback_state"]) == (outcome, "unavailable")
    assert_no_leaked_connections(gw)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("code", [400, 401, 403, 404, 413])
async def test_other_plan_4xx_is_relayed_unchanged_and_never_falls_back(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    code: int,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue(f"status:{code}")

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": stream})

    error_type, message = ERRORS[code]
    assert status == code
    assert body == orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_fakeerror"}
    )
    assert headers["x-ccproxy-provider"] == "plan" and "x-ccproxy-fallback" not in headers
    assert not bedrock.requests
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == (
        "plan",
        False,
        code,
        "client_error",
    )
    assert gw.app[server.CIRCUITS].route(row["access_key_id"], time.time()) == "plan"


async def test_plan_stream_failing_after_it_started_is_relayed_as_sent(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue("error_midstream")

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": True})

    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    assert body == upstream.sent[-1]
    assert body.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert not bedrock.requests
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["status"]) == ("plan", False, 200)
    assert (row["input_tokens"], row["output_tokens"]) == (25, 1)  # what was seen
    assert row["error_class"] == "overloaded_error"
    assert row["cost_usd"] == 0


async def test_all_cost_components_from_the_price_table(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    for stream in (False, True):
        upstream.queue("status:529")
        bedrock.queue("cache")
        status, _, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": stream})
        assert status == 200
        check_bedrock_answer(stream, body, kind="cache")
    # 10 input × $3, 42 output × $15, 1000 5-minute cache writes × $3.75, 500 1-hour cache
    # writes × $6 and 3000 cache reads × $0.30, per million tokens.
    expected = (
        Decimal("0.000030") + Decimal("0.000630") + Decimal("0.003750") + Decimal("0.003000") + Decimal("0.000900")
    )
    for row in await gw.usage_rows():
        check_fallback_row(row, stream=row["stream"], tokens=(10, 42), cost=expected)
        assert (row["cache_creation_input_tokens"], row["cache_read_input_tokens"]) == (1500, 3000)
        assert (row["cache_creation_5m_tokens"], row["cache_creation_1h_tokens"]) == (1000, 500)
        snapshot = row["price_snapshot"]
        assert {
            k: Decimal(snapshot[k]) for k in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
        } == {
            "input": 3,
            "output": 15,
            "cache_write_5m": Decimal("3.75"),
            "cache_write_1h": 6,
            "cache_read": Decimal("0.30"),
        }


# --- Bedrock errors -------------------------------------------------------------------------------

# The fake Bedrock's failures before the first byte, and what SPEC §4 maps each to when
# there is no plan answer to relay (the key's circuit is open). The last field is what the
# usage row and the log record as the Bedrock error's class.
BEDROCK_FAILURES = [
    pytest.param("denied", 500, "api_error", "bedrock_access_denied", id="denied"),
    pytest.param("throttle", 429, "rate_limit_error", "rate_limit_error", id="throttle"),
    pytest.param("validation", 400, "invalid_request_error", "invalid_request_error", id="validation"),
    pytest.param("unavailable", 529, "overloaded_error", "overloaded_error", id="unavailable"),
    pytest.param("exception_first", 429, "rate_limit_error", "rate_limit_error", id="first-frame-throttle"),
    pytest.param(
        "exception_first:validationException", 400, "invalid_request_error", "invalid_request_error", id="ff-valid"
    ),
    pytest.param("exception_first:modelStreamErrorException", 500, "api_error", "api_error", id="ff-model-stream"),
    pytest.param("exception_first:modelTimeoutException", 500, "api_error", "api_error", id="ff-model-timeout"),
    pytest.param(
        "exception_first:internalServerException", 529, "overloaded_error", "overloaded_error", id="ff-internal"
    ),
    pytest.param("error:500:InternalServerException", 529, "overloaded_error", "overloaded_error", id="500"),
    pytest.param("reset", 529, "overloaded_error", "overloaded_error", id="reset"),
]


def fallback_failures(text: str) -> dict[str, float]:
    """ccproxy_fallback_failures_total by error class, from the /metrics text."""
    out = {}
    for line in text.splitlines():
        if line.startswith("ccproxy_fallback_failures_total{"):
            name, value = line.rsplit(" ", 1)
            out[name.split('"')[1]] = float(value)
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("scenario", "_status", "_error_type", "bedrock_class"), BEDROCK_FAILURES)
async def test_a_failed_fallback_answers_the_plans_own_error_marked_failed(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    scenario: str,
    _status: int,
    _error_type: str,
    bedrock_class: str,
    stream: bool,
) -> None:
    """SPEC §3: a plan 429 (usage limit) then a Bedrock failure must not turn into, say, a
    401 that sends the developer to log in again: they get the plan's answer unchanged."""
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue("usage_limit")
    bedrock.queue(scenario)

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": stream})

    # byte for byte the plan's own error: Claude Code shows its wording and reset time
    assert status == 429, body
    assert body == orjson.dumps(
        {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": USAGE_LIMIT_MESSAGE},
            "request_id": "req_fakeerror",
        }
    )
    assert (headers["retry-after"], headers["request-id"]) == ("7", "req_fakeerror")
    assert (headers["x-ccproxy-provider"], headers["x-ccproxy-fallback"]) == ("plan", "failed")
    assert len(bedrock.requests) == 1  # it was tried, once
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == (
        "bedrock",
        True,
        429,
        bedrock_class,
    )
    assert row["upstream_model"] == SONNET_ID and row["cost_usd"] == 0
    [line] = completed(logs)
    assert (line["plan_outcome"], line["fallback_state"], line["error_class"]) == (
        "usage_limit",
        "failed",
        bedrock_class,
    )
    assert line["FallbackFailedCount"] == 1 and line["ErrorCount"] == 1
    [warning] = [entry for entry in logs.lines() if entry.get("event") == "bedrock_fallback_failed"]
    assert (warning["error_class"], warning["request_id"]) == (bedrock_class, line["request_id"])
    async with http.get(f"{gw.url}/metrics") as resp:
        assert fallback_failures(await resp.text()) == {bedrock_class: 1}
    assert_no_leaked_connections(gw)
    assert_no_secrets(logs, bedrock.api_key)


@pytest.mark.parametrize("scenario", ["slow_headers:1.2", "unreachable"])
async def test_a_failed_fallback_after_a_plan_timeout_or_network_error_is_the_gateways_own_error(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    scenario: str,
) -> None:
    upstream, _ = fake
    gw = await plan_for(start, upstream, scenario)
    key = (await key_with_bedrock(gw, bedrock))["key"]
    bedrock.queue("denied")

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", BODY)

    assert status == 502, body
    error = orjson.loads(body)
    assert error["error"]["type"] == "api_error"
    assert "did not answer in time" in error["error"]["message"] or "could not be reached" in error["error"]["message"]
    assert (headers["x-ccproxy-provider"], headers["x-ccproxy-fallback"]) == ("plan", "failed")
    [row] = await gw.usage_rows()
    assert (row["provider"], row["status"], row["error_class"]) == ("bedrock", 502, "bedrock_access_denied")
    [line] = completed(logs)
    assert line["plan_outcome"] == ("timeout" if scenario.startswith("slow") else "network_error")


async def open_circuit_then(
    gw: Gateway, http: aiohttp.ClientSession, upstream: FakeAnthropic, key: dict[str, Any]
) -> None:
    """With `circuit_failures=1`, one plan 529 (answered by Bedrock) opens the key's circuit."""
    upstream.queue("status:529")
    assert (await post(http, f"{gw.url}/ak/{key['key']}/v1/messages", BODY))[0] == 200

    async def is_open() -> bool:
        return gw.app[server.CIRCUITS].route(key["id"], time.time()) == "open"

    await eventually(is_open)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("scenario", "status", "error_type", "bedrock_class"), BEDROCK_FAILURES)
async def test_with_the_circuit_open_bedrock_errors_are_http_errors_never_401_or_403(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    scenario: str,
    status: int,
    error_type: str,
    bedrock_class: str,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await start(circuit_failures="1")
    key = await key_with_bedrock(gw, bedrock)
    await open_circuit_then(gw, http, upstream, key)
    plan_calls = len(upstream.requests)
    bedrock.queue(scenario)

    got, headers, body = await post(http, f"{gw.url}/ak/{key['key']}/v1/messages", {**BODY, "stream": stream})

    assert got == status, body
    assert len(upstream.requests) == plan_calls  # no plan answer to relay
    assert headers["content-type"].startswith("application/json")
    assert headers["x-ccproxy-provider"] == "bedrock"  # on-call can tell a Bedrock 429 from the plan's
    error = orjson.loads(body)
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert error["request_id"] == headers["x-ccproxy-request-id"]
    if scenario == "denied":
        assert "operator must fix" in error["error"]["message"]
    if status == 429:
        assert int(headers["retry-after"]) > 0
    rows = sorted(await gw.usage_rows(), key=lambda r: r["created_at"])
    assert (rows[-1]["provider"], rows[-1]["is_fallback"], rows[-1]["status"], rows[-1]["error_class"]) == (
        "bedrock",
        True,
        status,
        bedrock_class,
    )
    assert completed(logs)[-1]["plan_outcome"] == "circuit_open"
    assert_no_leaked_connections(gw)
    assert_no_secrets(logs, bedrock.api_key)


async def test_a_wrong_registered_bedrock_key_after_a_usage_limit_relays_the_plans_own_error(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start()
    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(
        gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], "ABSK-not-the-right-one"
    )
    upstream.queue("usage_limit")
    status, headers, body = await post(http, f"{gw.url}/ak/{issued['key']}/v1/messages", BODY)
    assert (status, headers["x-ccproxy-fallback"]) == (429, "failed")
    assert orjson.loads(body)["error"] == {"type": "rate_limit_error", "message": USAGE_LIMIT_MESSAGE}
    [row] = await gw.usage_rows()
    assert row["error_class"] == "bedrock_access_denied"


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [("modelStreamErrorException", "api_error"), ("throttlingException", "rate_limit_error")],
)
async def test_bedrock_failure_mid_stream_is_an_sse_error_event(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    exception: str,
    error_type: str,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue("usage_limit")
    bedrock.queue(f"exception_midstream:{exception}")

    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "stream": True})

    assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
    head = b"".join(
        bedrock_sse("text", fake_bedrock.anthropic_model(SONNET_ID)).split(b"\n\n")[i] + b"\n\n" for i in range(4)
    )
    error = {"type": "error", "error": {"type": error_type, "message": "fake midstream failure"}}
    assert same_ids(body) == same_ids(head + b"event: error\ndata: " + orjson.dumps(error) + b"\n\n")
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["status"], row["error_class"]) == (
        "bedrock",
        True,
        200,
        error_type,
    )
    # the usage seen before the failure is recorded and priced: 25 input, 1 output token
    assert (row["input_tokens"], row["output_tokens"]) == (25, 1)
    assert row["cost_usd"] == Decimal("0.000075") + Decimal("0.000015")


# --- what Bedrock receives ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_body_and_headers_bedrock_receives(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue("usage_limit")
    request = {
        **BODY,
        "stream": stream,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "description": "w", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "u-1"},
        "service_tier": "auto",
        "context_management": {"edits": []},
    }
    beta = "interleaved-thinking-2025-05-14,some-unknown-beta, claude-code-20250219"

    status, _, _ = await post(http, f"{gw.url}/ak/{key}/v1/messages?beta=true", request, {"anthropic-beta": beta})

    assert status == 200
    [seen] = bedrock.requests
    sent = orjson.loads(seen.body)
    expected = {k: v for k, v in request.items() if k not in ("model", "stream", "service_tier", "context_management")}
    expected["anthropic_version"] = "bedrock-2023-05-31"
    expected["anthropic_beta"] = ["interleaved-thinking-2025-05-14"]
    assert sent == expected
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["authorization"] == f"Bearer {bedrock.api_key}"
    assert headers["accept"] == ("application/vnd.amazon.eventstream" if stream else "application/json")
    # nothing of the developer's plan call goes to AWS: no plan credential, no beta header
    assert PLAN_CREDENTIAL not in repr(seen.headers) and key not in repr(seen.headers)
    assert "x-api-key" not in headers and "anthropic-beta" not in headers
    assert seen.query == ""


@pytest.mark.parametrize(
    ("requested", "key_model", "default_model", "expected_id", "cost"),
    [
        pytest.param(MODEL, None, None, SONNET_ID, TEXT_COST, id="mapped-dated"),
        pytest.param("claude-sonnet-4-5", None, None, SONNET_ID, TEXT_COST, id="mapped-alias"),
        pytest.param(
            "claude-haiku-4-5-20251001",
            None,
            None,
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            Decimal("0.000025") + Decimal("0.000060"),
            id="mapped-haiku",
        ),
        pytest.param(
            "claude-opus-4-8",  # unknown to the mapping table: the configured default
            None,
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            Decimal("0.000020") + Decimal("0.000048"),
            id="default-setting",
        ),
        pytest.param("claude-opus-4-8", None, None, SONNET_ID, TEXT_COST, id="default"),
        pytest.param(
            MODEL,
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            None,
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            Decimal("0.000375") + Decimal("0.000900"),
            id="key-model-wins",
        ),
    ],
)
async def test_bedrock_model_is_the_keys_else_mapped_else_default(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    requested: str,
    key_model: str | None,
    default_model: str | None,
    expected_id: str,
    cost: Decimal,
) -> None:
    upstream, _ = fake
    settings = {"bedrock_default_model": default_model} if default_model else {}
    gw = await start(**settings)
    key = (await key_with_bedrock(gw, bedrock, bedrock_model=key_model))["key"]
    upstream.queue("usage_limit")

    status, _, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", {**BODY, "model": requested})

    assert status == 200
    assert bedrock.requests[0].path == f"/model/{expected_id}/invoke"
    assert orjson.loads(body)["model"] == fake_bedrock.anthropic_model(expected_id)
    [row] = await gw.usage_rows()
    assert (row["model"], row["upstream_model"]) == (requested, expected_id)
    assert row["cost_usd"] == cost


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, bedrock: FakeBedrock, tmp_path: Path) -> None:
    """The default AWS credential chain finds exactly the fake's access key pair."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bedrock.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bedrock.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("key_region", "key_model", "region", "model_id"),
    [
        pytest.param(None, None, "ap-southeast-2", SONNET_ID, id="defaults"),
        pytest.param(
            "eu-west-1",
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            "eu-west-1",
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            id="key-region-and-model",
        ),
    ],
)
async def test_sigv4_with_the_default_credential_chain(
    aws_env: None,
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    key_region: str | None,
    key_model: str | None,
    region: str,
    model_id: str,
    stream: bool,
) -> None:
    upstream, _ = fake
    gw = await start(bedrock_default_region="ap-southeast-2")
    issued = await gw.issue_key("dev", bedrock_region=key_region, bedrock_model=key_model)
    await keys.update(gw.database, audit.SYSTEM, issued["id"], keys.KeyUpdate(bedrock_default_credentials=True))
    upstream.queue("status:529")

    status, headers, body = await post(http, f"{gw.url}/ak/{issued['key']}/v1/messages", {**BODY, "stream": stream})

    assert status == 200, body  # the fake verified the signature by re-signing
    assert headers["x-ccproxy-provider"] == "bedrock"
    check_bedrock_answer(stream, body, model_id)
    [seen] = bedrock.requests
    assert seen.path.startswith(f"/model/{model_id}/")
    auth = seen.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={bedrock.access_key_id}/")
    assert f"/{region}/bedrock/aws4_request" in auth
    [row] = await gw.usage_rows()
    assert (row["provider"], row["is_fallback"], row["upstream_model"]) == ("bedrock", True, model_id)
    assert_no_secrets(logs, bedrock.secret_key)


async def test_key_without_permission_for_default_credentials_has_no_fallback(
    aws_env: None, start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    gw = await start()
    issued = await gw.issue_key("dev")
    await keys.update(gw.database, audit.SYSTEM, issued["id"], keys.KeyUpdate(bedrock_default_credentials=True))
    await keys.update(gw.database, audit.SYSTEM, issued["id"], keys.KeyUpdate(bedrock_default_credentials=False))
    upstream.queue("status:529")
    status, headers, _ = await post(http, f"{gw.url}/ak/{issued['key']}/v1/messages", BODY)
    assert (status, headers["x-ccproxy-fallback"]) == (529, "unavailable")
    assert not bedrock.requests


# --- count_tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["status:529", "usage_limit", "status:429"])
async def test_count_tokens_falls_back_to_bedrock_count_tokens(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    scenario: str,
) -> None:
    upstream, _ = fake
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    upstream.queue(scenario)
    request = {"model": MODEL, "messages": [{"role": "user", "content": "count me"}]}

    status, headers, body = await post(
        http,
        f"{gw.url}/ak/{key}/v1/messages/count_tokens?beta=true",
        request,
        {"anthropic-beta": "token-counting-2024-11-01"},
    )

    assert (status, orjson.loads(body)) == (200, {"input_tokens": fake_bedrock.COUNT_TOKENS})
    assert headers["x-ccproxy-provider"] == "bedrock"
    [seen] = bedrock.requests
    # CountTokens takes the foundation model, not the `global.` inference profile
    assert seen.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens"
    inner = orjson.loads(base64.b64decode(orjson.loads(seen.body)["input"]["invokeModel"]["body"]))
    assert "model" not in inner and inner["anthropic_version"] == "bedrock-2023-05-31"
    assert inner["messages"] == request["messages"]
    [row] = await gw.usage_rows()
    assert (row["endpoint"], row["provider"], row["is_fallback"], row["status"]) == (
        "count_tokens",
        "bedrock",
        True,
        200,
    )


async def test_count_tokens_without_bedrock_or_on_client_error(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
) -> None:
    upstream, _ = fake
    gw = await start()
    plain = (await gw.issue_key("plain"))["key"]
    with_bedrock = (await key_with_bedrock(gw, bedrock))["key"]
    request = {"model": MODEL, "messages": [{"role": "user", "content": "count me"}]}

    upstream.queue("status:529")
    status, headers, body = await post(http, f"{gw.url}/ak/{plain}/v1/messages/count_tokens", request)
    assert (status, headers["x-ccproxy-fallback"]) == (529, "unavailable")
    assert orjson.loads(body)["error"]["type"] == "overloaded_error"

    upstream.queue("status:400")
    status, headers, _ = await post(http, f"{gw.url}/ak/{with_bedrock}/v1/messages/count_tokens", request)
    assert (status, headers["x-ccproxy-provider"]) == (400, "plan")
    assert not bedrock.requests

    status, _, body = await post(http, f"{gw.url}/ak/{with_bedrock}/v1/messages/count_tokens", request)
    assert (status, orjson.loads(body)) == (200, {"input_tokens": 42})  # the plan's own answer
    assert not bedrock.requests


# --- the official SDK on the fallback path ------------------------------------------------------------


@pytest.fixture
def clean_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_anthropic_sdk_gets_bedrock_answers(
    clean_sdk_env: None, start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock
) -> None:
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    messages: Any = [{"role": "user", "content": "hi"}]
    model = "claude-sonnet-4-6"  # not on the SDK's deprecation list; unmapped, so the default id
    async with AsyncAnthropic(base_url=f"{gw.url}/ak/{key}", api_key=PLAN_CREDENTIAL, max_retries=0) as client:
        raw = await client.messages.with_raw_response.create(model=model, max_tokens=64, messages=messages)
        assert raw.headers["x-ccproxy-provider"] == "bedrock"
        message = await raw.parse()
        assert message.content[0].type == "text" and message.content[0].text == BEDROCK_TEXT
        assert message.model == "claude-sonnet-4-5-20250929"  # what Bedrock reports, not the plan's echo
        assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 12)
        assert message.stop_reason == "end_turn"

        async with client.messages.stream(model=model, max_tokens=64, messages=messages) as stream:
            assert stream.response.headers["x-ccproxy-provider"] == "bedrock"
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text == BEDROCK_TEXT and final.content[0].text == BEDROCK_TEXT  # type: ignore[union-attr]
        assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 12)

        bedrock.queue("tool_use")
        async with client.messages.stream(model=model, max_tokens=64, messages=messages) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[1].type == "tool_use" and final.content[1].input == {"location": "Paris"}

        counted = await client.messages.count_tokens(model=model, messages=messages)
        assert counted.input_tokens == fake_bedrock.COUNT_TOKENS
    rows = await gw.usage_rows()
    assert [(r["provider"], r["is_fallback"], r["stream"]) for r in rows] == [
        ("bedrock", True, False),
        ("bedrock", True, True),
        ("bedrock", True, True),
        ("bedrock", True, False),
    ]


# --- prices, keys at rest, logs ---------------------------------------------------------------------


async def test_price_change_applies_without_restart_and_old_rows_keep_their_snapshot(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    database_url: str,
) -> None:
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    key = (await key_with_bedrock(gw, bedrock))["key"]
    url = f"{gw.url}/ak/{key}/v1/messages"
    assert (await post(http, url, BODY))[0] == 200

    today = dt.datetime.now(dt.UTC).date().isoformat()
    env = cli_env(tmp_path, database_url=database_url)
    args = ["pricing", "set", "claude-sonnet-4-5", "--input", "6", "--output", "30", "--cache-write-5m", "7.5"]
    args += ["--cache-write-1h", "12", "--cache-read", "0.6", "--effective-date", today, "--json"]
    await asyncio.to_thread(run_cli, env, *args)
    changed = time.monotonic()
    prices = gw.app[server.PRICES]
    while prices.book.lookup(SONNET_ID, "us-east-1", dt.datetime.now(dt.UTC)).input != 6:  # type: ignore[union-attr]
        assert time.monotonic() - changed < 5, "the running gateway did not pick up the new price within 5 s"
        await asyncio.sleep(0.05)
    assert (await post(http, url, BODY))[0] == 200

    first, second = await gw.usage_rows()
    assert first["cost_usd"] == TEXT_COST
    assert Decimal(first["price_snapshot"]["input"]) == 3 and Decimal(first["price_snapshot"]["output"]) == 15
    assert second["cost_usd"] == Decimal(25) * 6 / 10**6 + Decimal(12) * 30 / 10**6
    assert Decimal(second["price_snapshot"]["input"]) == 6
    assert second["price_snapshot"]["effective_date"] == today


async def test_bedrock_key_via_cli_is_sealed_used_updated_and_removed(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
    tmp_path: Path,
    database_url: str,
) -> None:
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    issued = await gw.issue_key("dev")
    url = f"{gw.url}/ak/{issued['key']}/v1/messages"
    env = cli_env(tmp_path, database_url=database_url)  # same data dir: the same master key file

    process = await asyncio.create_subprocess_exec(
        "python",
        "-m",
        "gateway",
        "keys",
        "bedrock-key",
        str(issued["id"]),
        "--json",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(bedrock.api_key.encode() + b"\n")
    assert process.returncode == 0, err
    assert orjson.loads(out) == {"id": issued["id"], "bedrock_key": "registered"}
    assert bedrock.api_key.encode() not in out + err

    async with gw.database.acquire() as conn:
        blob = await conn.fetchval("SELECT bedrock_key_blob FROM access_keys WHERE id = $1", issued["id"])
    assert blob and bedrock.api_key.encode() not in blob  # sealed at rest

    status, headers, body = await post(http, url, BODY)
    assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
    assert bedrock.requests[-1].headers["Authorization"] == f"Bearer {bedrock.api_key}"

    await asyncio.to_thread(
        run_cli,
        env,
        "keys",
        "update",
        str(issued["id"]),
        "--bedrock-region",
        "eu-central-1",
        "--bedrock-model",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "--json",
    )
    await eventually(lambda: post_ok(http, url, bedrock, "/model/eu.anthropic.claude-sonnet-4-5-20250929-v1:0/"))

    await asyncio.to_thread(run_cli, env, "keys", "bedrock-key", str(issued["id"]), "--remove", "--json")
    deadline = time.monotonic() + 2
    while True:
        status, headers, body = await post(http, url, BODY)
        if headers.get("x-ccproxy-fallback") == "unavailable" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (status, headers["x-ccproxy-fallback"]) == (429, "unavailable")
    assert orjson.loads(body)["error"]["message"] == USAGE_LIMIT_MESSAGE
    assert_no_secrets(logs, bedrock.api_key)


async def post_ok(http: aiohttp.ClientSession, url: str, bedrock: FakeBedrock, path_prefix: str) -> bool:
    status, _, _ = await post(http, url, BODY)
    return status == 200 and bedrock.requests[-1].path.startswith(path_prefix)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_tampered_bedrock_key_blob_is_rejected_and_means_no_fallback(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
) -> None:
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    issued = await key_with_bedrock(gw, bedrock)
    url = f"{gw.url}/ak/{issued['key']}/v1/messages"
    assert (await post(http, url, BODY))[0] == 200  # round trip: sealed, opened, used

    async with gw.database.acquire() as conn:
        blob = bytearray(await conn.fetchval("SELECT bedrock_key_blob FROM access_keys WHERE id = $1", issued["id"]))
        blob[-5] ^= 0x01
        await conn.execute("UPDATE access_keys SET bedrock_key_blob = $2 WHERE id = $1", issued["id"], bytes(blob))

    async def unavailable() -> bool:
        return (await post(http, url, BODY))[1].get("x-ccproxy-fallback") == "unavailable"

    # A request may still meet the cached, untampered key until the NOTIFY of the UPDATE
    # arrives; from then on the key cannot be opened and Bedrock is never called.
    await eventually(unavailable)
    calls = len(bedrock.requests)
    assert await unavailable()
    assert len(bedrock.requests) == calls
    assert any(line.get("event") == "bedrock_key_unreadable" for line in logs.lines())
    assert_no_secrets(logs, bedrock.api_key)


async def test_rotated_bedrock_key_is_used_at_once(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    """Decrypted keys are cached, but a rotation drops the cached copy (SPEC §4)."""
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    issued = await gw.issue_key("dev")
    url = f"{gw.url}/ak/{issued['key']}/v1/messages"
    keyring = gw.app[server.KEYRING]
    await keys.set_bedrock_key(gw.database, keyring, audit.SYSTEM, issued["id"], "ABSK-an-old-revoked-key")
    status, headers, _ = await post(http, url, BODY)
    assert (status, headers["x-ccproxy-fallback"]) == (429, "failed")  # Bedrock refused the old key
    await keys.set_bedrock_key(gw.database, keyring, audit.SYSTEM, issued["id"], bedrock.api_key)

    async def answered() -> bool:
        return (await post(http, url, BODY))[0] == 200

    await eventually(answered, within=1.0)
    assert bedrock.requests[-1].headers["Authorization"] == f"Bearer {bedrock.api_key}"


async def test_org_mode_falls_back_too(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    upstream, plan_url = fake
    gw = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url, plan_api_key="sk-ant-org-key-0001")  # type: ignore[attr-defined]
    issued = await key_with_bedrock(gw, bedrock)
    upstream.queue("status:529")
    headers = {"x-api-key": issued["key"], "anthropic-version": "2023-06-01"}
    async with http.post(f"{gw.url}/v1/messages", data=orjson.dumps(BODY), headers=headers) as resp:
        assert (resp.status, resp.headers["x-ccproxy-provider"]) == (200, "bedrock")
        check_bedrock_answer(False, await resp.read())
    assert upstream.requests[-1].headers["x-api-key"] == "sk-ant-org-key-0001"
    assert issued["key"] not in repr(bedrock.requests[-1].headers)
    [row] = await gw.usage_rows()
    check_fallback_row(row, stream=False)


async def test_warnings_logged_while_serving_a_request_carry_its_request_id(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    logs: LogCapture,
) -> None:
    """On-call joins a warning to its request line by the request id (issue 13 §1)."""
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start()
    unpriced = (await key_with_bedrock(gw, bedrock, bedrock_model="us.anthropic.claude-unpriced-9-v1:0"))["key"]
    unreadable = await gw.issue_key("bob")
    async with gw.database.acquire() as conn:
        await conn.execute(
            "UPDATE access_keys SET bedrock_key_blob = $2 WHERE id = $1", unreadable["id"], b"not a sealed key"
        )

    ids = {}
    for name, key in (("price_missing", unpriced), ("bedrock_key_unreadable", unreadable["key"])):
        _, headers, _ = await post(http, f"{gw.url}/ak/{key}/v1/messages", BODY)
        ids[name] = headers["x-ccproxy-request-id"]

    lines = logs.lines()
    for name, request_id in ids.items():
        [warning] = [line for line in lines if line.get("event") == name]
        assert warning["request_id"] == request_id
        [request_line] = [line for line in completed(logs) if line["request_id"] == request_id]
        assert request_line["provider"] == ("bedrock" if name == "price_missing" else "plan")


@pytest.mark.parametrize("bypassed", [False, True], ids=["proxied", "no_proxy"])
async def test_plan_and_bedrock_calls_go_through_the_outbound_proxy_unless_no_proxy_says(
    tmp_path: Path,
    database_url: str,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    bypassed: bool,
) -> None:
    """HTTPS_PROXY / HTTP_PROXY / NO_PROXY (issue 13 §4): corporate networks reach the
    plan and Bedrock only through their proxy. (Both fakes are http://, so HTTP_PROXY.)"""
    upstream, plan_url = fake
    upstream.queue("usage_limit")
    async with ConnectProxy() as proxy:
        config = make_config(tmp_path, database_url, plan_url, bedrock_endpoint_url=bedrock.url)  # type: ignore[attr-defined]
        config = config.replace(http_proxy=proxy.url, no_proxy=("127.0.0.1",) if bypassed else ())
        runner, url = await start_site(server.create_app(config, journal_dir=tmp_path / "journal"))
        try:
            gw = Gateway(url, runner.app, config)
            key = (await key_with_bedrock(gw, bedrock))["key"]
            status, headers, body = await post(http, f"{url}/ak/{key}/v1/messages", BODY)
            assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock"), body
            check_bedrock_answer(False, body)
        finally:
            await runner.cleanup()
    assert len(upstream.requests) == 1 and len(bedrock.requests) == 1
    if bypassed:
        assert (proxy.tunnels, proxy.forwarded) == ([], [])
    else:
        assert proxy.tunnels == [plan_url.removeprefix("http://")]  # the plan: a CONNECT tunnel
        model = SONNET_ID.replace(":", "%3A")  # the path as SigV4 signs it
        assert proxy.forwarded == [f"{bedrock.url}/model/{model}/invoke"]  # type: ignore[attr-defined]
