"""The official `anthropic` Python SDK as the client: everything it parses (content blocks,
usage, streamed deltas, errors) must come through the gateway as from Anthropic itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from conftest import Gateway

from bench.fake_anthropic import ERRORS, FINAL_OUTPUT_TOKENS, TEXT, FakeAnthropic

MODEL = "claude-sonnet-4-6"  # not on the SDK's deprecation list (it warns for those)
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
PLAN_KEY = "sk-ant-sdk-test"
INPUT_TOKENS = 25
TIMEOUT = 30  # seconds; the SDK would wait 10 min for a stuck gateway
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads ANTHROPIC_* and (via httpx) proxy variables from the environment."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def key(gateway: Gateway) -> str:
    return str((await gateway.issue_key("sdk-user"))["key"])


@pytest.fixture
async def client(gateway: Gateway, key: str) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(
        base_url=f"{gateway.url}/ak/{key}", api_key=PLAN_KEY, max_retries=0, timeout=TIMEOUT
    ) as sdk:
        yield sdk


def upstream_headers(upstream: FakeAnthropic, index: int = -1) -> dict[str, str]:
    return {k.lower(): v for k, v in upstream.requests[index].headers.items()}


def check_plan_request(upstream: FakeAnthropic, key: str, path: str = "/v1/messages") -> None:
    seen = upstream.requests[-1]
    headers = upstream_headers(upstream)
    assert seen.path == path
    # anthropic 2.x sends `api_key` as `Authorization: Bearer …`: relayed unchanged (SPEC §2)
    assert headers["authorization"] == f"Bearer {PLAN_KEY}" and "x-api-key" not in headers, headers
    assert headers["user-agent"].startswith("AsyncAnthropic/Python ")
    assert headers["x-stainless-lang"] == "python"
    assert key not in repr(headers)


# --- non-streaming ------------------------------------------------------------------------------


async def test_create_text(client: AsyncAnthropic, gateway: Gateway, fake: tuple[FakeAnthropic, str], key: str) -> None:
    upstream, _ = fake
    raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert raw.headers["x-ccproxy-provider"] == "plan"
    assert raw.headers["request-id"] == "req_fakemsg"
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert isinstance(message.content[0], anthropic.types.TextBlock)
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)
    check_plan_request(upstream, key)

    [row] = await gateway.usage_rows()
    assert str(row["request_id"]) == raw.headers["x-ccproxy-request-id"]
    assert (row["endpoint"], row["status"], row["stream"], row["model"]) == ("messages", 200, False, MODEL)
    assert (row["input_tokens"], row["output_tokens"]) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)


async def test_create_tool_use(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]) -> None:
    fake[0].queue("tool_use")
    message = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {}}}}],
    )
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "Let me check."
    assert isinstance(tool, anthropic.types.ToolUseBlock)
    assert (tool.id, tool.name, tool.input) == ("toolu_fake01", "get_weather", {"location": "Paris"})
    assert message.usage.output_tokens == FINAL_OUTPUT_TOKENS


async def test_create_thinking(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]) -> None:
    fake[0].queue("thinking")
    message = await client.messages.create(
        model=MODEL, max_tokens=2048, messages=MESSAGES, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    thinking, text = message.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("Let me think step by step.", SIGNATURE)
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "The answer is 4."
    assert (message.usage.input_tokens, message.usage.output_tokens) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)


# --- streaming ------------------------------------------------------------------------------------


async def test_stream_text(client: AsyncAnthropic, gateway: Gateway, fake: tuple[FakeAnthropic, str], key: str) -> None:
    upstream, _ = fake
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        deltas = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert deltas == ["Hello from", " the fake", " upstream."]
    assert "".join(deltas) == TEXT
    assert final.content[0].type == "text" and final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)
    check_plan_request(upstream, key)
    assert json.loads(upstream.requests[-1].body)["stream"] is True

    [row] = await gateway.usage_rows()
    assert (row["status"], row["stream"], row["error_class"]) == (200, True, None)
    assert (row["input_tokens"], row["output_tokens"]) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)


async def test_create_stream_true_tool_use(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]) -> None:
    fake[0].queue("tool_use")
    stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    types: list[str] = []
    partial = ""
    usage: dict[str, int] = {}
    async for event in stream:
        types.append(event.type)
        if event.type == "message_start":
            usage["input_tokens"] = event.message.usage.input_tokens
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial += event.delta.partial_json
        elif event.type == "message_delta":
            usage["output_tokens"] = event.usage.output_tokens
            assert event.delta.stop_reason == "tool_use"
    assert json.loads(partial) == {"location": "Paris"}
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert usage == {"input_tokens": INPUT_TOKENS, "output_tokens": FINAL_OUTPUT_TOKENS}


async def test_stream_tool_use_final_message(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]) -> None:
    fake[0].queue("tool_use")
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        json_snapshots = [event.snapshot async for event in stream if event.type == "input_json"]
        final = await stream.get_final_message()
    assert json_snapshots[-1] == {"location": "Paris"}
    tool = final.content[1]
    assert isinstance(tool, anthropic.types.ToolUseBlock)
    assert (tool.name, tool.input) == ("get_weather", {"location": "Paris"})
    assert final.stop_reason == "tool_use"


async def test_stream_thinking_with_signature(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]) -> None:
    fake[0].queue("thinking")
    async with client.messages.stream(
        model=MODEL, max_tokens=2048, messages=MESSAGES, thinking={"type": "enabled", "budget_tokens": 1024}
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_message()
    assert [e.thinking for e in events if e.type == "thinking"] == ["Let me think step by step."]
    assert [e.signature for e in events if e.type == "signature"] == [SIGNATURE]
    thinking, text = final.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("Let me think step by step.", SIGNATURE)
    assert isinstance(text, anthropic.types.TextBlock) and text.text == "The answer is 4."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, FINAL_OUTPUT_TOKENS)


# --- the other endpoints ------------------------------------------------------------------------------


async def test_count_tokens(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str], key: str) -> None:
    counted = await client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 42
    check_plan_request(fake[0], key, "/v1/messages/count_tokens")


async def test_models_list(client: AsyncAnthropic, fake: tuple[FakeAnthropic, str], key: str) -> None:
    page = await client.models.list()
    ids = [model.id async for model in page]
    assert ids == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    assert page.data[0].display_name == "Claude Sonnet 4.5"
    seen = fake[0].requests[-1]
    assert (seen.method, seen.path) == ("GET", "/v1/models")
    check_plan_request(fake[0], key, "/v1/models")


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(429, anthropic.RateLimitError), (400, anthropic.BadRequestError), (529, anthropic.OverloadedError)],
)
async def test_upstream_errors_surface_as_sdk_errors(
    client: AsyncAnthropic,
    gateway: Gateway,
    fake: tuple[FakeAnthropic, str],
    code: int,
    error_class: type[anthropic.APIStatusError],
) -> None:
    fake[0].queue(f"status:{code}")
    with pytest.raises(error_class) as caught:
        await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    error = caught.value
    assert error.status_code == code
    assert (error.type, error.api_message) == ERRORS[code]
    assert error.request_id == "req_fakeerror"
    assert error.response.headers["x-ccproxy-provider"] == "plan"
    if code == 429:
        assert error.response.headers["retry-after"] == "7"
    # max_retries=0, and the gateway does not retry a plan error itself
    assert len(fake[0].requests) == 1
    [row] = await gateway.usage_rows()
    assert row["status"] == code


async def test_unknown_access_key_is_not_found(gateway: Gateway, fake: tuple[FakeAnthropic, str]) -> None:
    unknown = "ak_" + "x" * 40
    async with AsyncAnthropic(
        base_url=f"{gateway.url}/ak/{unknown}", api_key=PLAN_KEY, max_retries=0, timeout=TIMEOUT
    ) as sdk:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    error = caught.value
    assert error.status_code == 404
    assert error.type == "not_found_error" and error.api_message
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["request_id"] == error.response.headers["x-ccproxy-request-id"]
    assert unknown not in error.response.text
    assert fake[0].requests == []


async def test_error_event_midstream_raises(
    client: AsyncAnthropic, gateway: Gateway, fake: tuple[FakeAnthropic, str]
) -> None:
    fake[0].queue("error_midstream")
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            async for text in stream.text_stream:
                received.append(text)  # noqa: PERF401 (a comprehension would lose what came before the error)
    assert received == ["Partial"]
    error = caught.value
    assert (error.type, error.api_message) == ("overloaded_error", "Overloaded")
    [row] = await gateway.usage_rows()
    assert (row["status"], row["stream"], row["error_class"]) == (200, True, "overloaded_error")


async def test_error_event_midstream_raises_with_create_stream(
    client: AsyncAnthropic, fake: tuple[FakeAnthropic, str]
) -> None:
    fake[0].queue("error_midstream")
    stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    types: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in stream:
            types.append(event.type)  # noqa: PERF401 (keep the events that came before the error)
    assert types == ["message_start", "content_block_start", "content_block_delta"]
    assert caught.value.type == "overloaded_error"


# --- org mode -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_org_mode_with_the_access_key_as_the_api_key(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], header: str
) -> None:
    upstream, fake_url = fake
    gw: Gateway = await gateway_factory(fake_url, plan_api_key="sk-ant-org")
    key = (await gw.issue_key("org-user"))["key"]
    # The SDK sends api_key as `Authorization: Bearer ak_…`; older SDKs and other clients
    # send `x-api-key: ak_…`, which the gateway takes too.
    extra: dict[str, Any] = {}
    if header == "x-api-key":
        extra["default_headers"] = {"x-api-key": key, "Authorization": anthropic.Omit()}
    async with AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=TIMEOUT, **extra) as sdk:
        message = await sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        async with sdk.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            streamed = await stream.get_final_text()
        counted = await sdk.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert streamed == TEXT
    assert counted.input_tokens == 42
    for index, seen in enumerate(upstream.requests):
        headers = upstream_headers(upstream, index)
        # the organisation's key goes to the plan, the access key never does
        assert headers["x-api-key"] == "sk-ant-org"
        assert "authorization" not in headers
        assert key not in repr(headers) and key not in seen.query
    rows = await gw.usage_rows()
    assert [(r["endpoint"], r["stream"], r["status"]) for r in rows] == [
        ("messages", False, 200),
        ("messages", True, 200),
        ("count_tokens", False, 200),
    ]
    assert [(r["input_tokens"], r["output_tokens"]) for r in rows[:2]] == [(INPUT_TOKENS, FINAL_OUTPUT_TOKENS)] * 2
