"""The plan relay as a client sees it: real HTTP through an in-process gateway to the
fake Anthropic upstream, with usage rows read back from PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from conftest import Gateway

from bench.fake_anthropic import FakeAnthropic, message_json

BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
PLAN_HEADERS = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}


def stream_body(**extra: object) -> bytes:
    return orjson.dumps({**BODY, "stream": True, **extra})


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(url, data=body, headers={**PLAN_HEADERS, **(headers or {})}) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def test_non_streaming_answer_is_relayed_with_gateway_headers(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    status, headers, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages", orjson.dumps(BODY))
    assert status == 200
    assert orjson.loads(body)["content"][0]["text"] == "Hello from the fake upstream."
    assert headers["x-ccproxy-provider"] == "plan"
    assert len(headers["x-ccproxy-request-id"]) == 36
    assert headers["request-id"] == "req_fakemsg"
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    # upstream-internal headers stay behind
    assert "x-fake-internal" not in headers and "cf-ray" not in headers and "via" not in headers
    [row] = await gateway.usage_rows()
    assert (row["provider"], row["status"], row["stream"], row["is_fallback"]) == ("plan", 200, False, False)
    assert (row["input_tokens"], row["output_tokens"]) == (25, 12)
    assert str(row["request_id"]) == headers["x-ccproxy-request-id"]


async def test_stream_bytes_reach_the_client_unchanged(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    key = (await gateway.issue_key())["key"]
    for scenario in ("text", "tool_use", "thinking", "cache", "split:3", "split:1", "events:300"):
        upstream.queue(scenario)
        status, headers, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages?beta=true", stream_body())
        assert status == 200, scenario
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-accel-buffering"] == "no"
        assert body == upstream.sent[-1], f"{scenario}: bytes differ"


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("text", (25, 12, 0, 0, 0, 0)),
        ("tool_use", (25, 12, 0, 0, 0, 0)),
        ("thinking", (25, 12, 0, 0, 0, 0)),
        ("cache", (10, 42, 1500, 1000, 500, 3000)),
        ("split:2", (25, 12, 0, 0, 0, 0)),
    ],
)
async def test_stream_usage_is_taken_from_message_start_and_delta(
    gateway: Gateway,
    fake: tuple[FakeAnthropic, str],
    http: aiohttp.ClientSession,
    scenario: str,
    expected: tuple[int, ...],
) -> None:
    fake[0].queue(scenario)
    key = (await gateway.issue_key())["key"]
    status, _, _ = await post(http, f"{gateway.url}/ak/{key}/v1/messages", stream_body())
    assert status == 200
    [row] = await gateway.usage_rows()
    got = tuple(
        row[c]
        for c in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_creation_5m_tokens",
            "cache_creation_1h_tokens",
            "cache_read_input_tokens",
        )
    )
    assert got == expected
    assert row["stream"] is True and row["error_class"] is None
    assert row["upstream_model"] == BODY["model"]


async def test_in_stream_error_is_relayed_and_recorded(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    fake[0].queue("error_midstream")
    key = (await gateway.issue_key())["key"]
    status, _, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages", stream_body())
    assert status == 200
    assert b"event: error" in body and body == fake[0].sent[-1]
    [row] = await gateway.usage_rows()
    assert row["error_class"] == "overloaded_error"
    assert row["input_tokens"] == 25  # what was seen before the error is kept


async def test_request_headers_are_allow_listed_and_query_kept(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    headers = {
        "anthropic-beta": "interleaved-thinking-2025-05-14",
        "user-agent": "claude-cli/2.0.0 (external, cli)",
        "x-stainless-lang": "js",
        "x-claude-code-session-id": "sess-42",
        "connection": "keep-alive",
        "te": "trailers",
        "x-forwarded-for": "10.1.2.3",
        "cookie": "a=b",
        "x-custom-internal": "nope",
    }
    await post(http, f"{gateway.url}/ak/{key}/v1/messages?beta=true&x=1%202", orjson.dumps(BODY), headers)
    seen = fake[0].requests[-1]
    assert seen.path == "/v1/messages" and seen.query == "beta=true&x=1%202"
    lower = {k.lower(): v for k, v in seen.headers.items()}
    assert lower["x-api-key"] == PLAN_HEADERS["x-api-key"]
    assert lower["anthropic-version"] == "2023-06-01"
    assert lower["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert lower["user-agent"] == "claude-cli/2.0.0 (external, cli)"
    assert lower["x-stainless-lang"] == "js"
    for dropped in ("te", "x-forwarded-for", "cookie", "x-custom-internal", "x-claude-code-session-id"):
        assert dropped not in lower, dropped
    assert seen.body == orjson.dumps(BODY)  # the body went upstream as the same bytes
    [row] = await gateway.usage_rows()
    assert row["session_id"] == "sess-42"


async def test_anthropic_version_defaults_and_oauth_token_is_forwarded(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    async with http.post(
        f"{gateway.url}/ak/{key}/v1/messages",
        data=orjson.dumps(BODY),
        headers={"authorization": "Bearer sk-ant-oat01-plan-oauth-token"},
    ) as resp:
        assert resp.status == 200
    lower = {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}
    assert lower["authorization"] == "Bearer sk-ant-oat01-plan-oauth-token"
    assert lower["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in lower


async def test_org_plan_key_is_used_when_the_request_has_no_credential(
    gateway_factory, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(fake[1], plan_api_key="sk-ant-org-key")
    key = (await gw.issue_key())["key"]
    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=orjson.dumps(BODY)) as resp:
        assert resp.status == 200
    assert {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}["x-api-key"] == "sk-ant-org-key"


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
async def test_org_mode_takes_the_access_key_from_headers(
    gateway_factory, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, how: str
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(fake[1], plan_api_key="sk-ant-org-key")
    key = (await gw.issue_key())["key"]
    header = {"x-api-key": key} if how == "x-api-key" else {"authorization": f"Bearer {key}"}
    async with http.post(f"{gw.url}/v1/messages?beta=true", data=stream_body(), headers=header) as resp:
        assert resp.status == 200
        await resp.read()
    lower = {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}
    assert lower["x-api-key"] == "sk-ant-org-key"  # the access key never goes upstream
    assert "authorization" not in lower
    [row] = await gw.usage_rows()
    assert row["stream"] is True and row["output_tokens"] == 12


async def test_count_tokens_and_models_are_relayed(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    status, _, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages/count_tokens?beta=true", orjson.dumps(BODY))
    assert (status, orjson.loads(body)) == (200, {"input_tokens": 42})
    async with http.get(f"{gateway.url}/ak/{key}/v1/models", headers=PLAN_HEADERS) as resp:
        assert resp.status == 200
        assert (await resp.json())["data"][0]["id"] == "claude-sonnet-4-5-20250929"
    rows = await gateway.usage_rows()
    assert sorted(r["endpoint"] for r in rows) == ["count_tokens", "models"]


def assert_anthropic_error(status: int, body: bytes, want_status: int, want_type: str) -> None:
    assert status == want_status
    data = orjson.loads(body)
    assert data["type"] == "error" and data["error"]["type"] == want_type
    assert data["error"]["message"] and data["request_id"]


@pytest.mark.parametrize(
    "key",
    ["ak_" + "A" * 43, "not-a-key", "ak_short", "ak_" + "!" * 43],
)
async def test_unknown_or_malformed_keys_get_404(gateway: Gateway, http: aiohttp.ClientSession, key: str, logs) -> None:  # type: ignore[no-untyped-def]
    status, _, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages", orjson.dumps(BODY))
    assert_anthropic_error(status, body, 404, "not_found_error")
    assert key not in logs.text() or len(key) < 10


async def test_revoked_key_gets_404_and_nothing_reaches_the_plan(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    from gateway import audit, keys

    issued = await gateway.issue_key()
    url = f"{gateway.url}/ak/{issued['key']}/v1/messages"
    assert (await post(http, url, orjson.dumps(BODY)))[0] == 200
    await keys.revoke(gateway.database, audit.SYSTEM, issued["id"])
    await asyncio.sleep(0.3)
    before = len(fake[0].requests)
    status, _, body = await post(http, url, orjson.dumps(BODY))
    assert_anthropic_error(status, body, 404, "not_found_error")
    assert len(fake[0].requests) == before


async def test_malformed_json_gets_400_and_a_usage_row(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await gateway.issue_key())["key"]
    for bad in (b"{bad", b"[1,2]", b'{"model": 5}', b""):
        status, _, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages", bad)
        assert_anthropic_error(status, body, 400, "invalid_request_error")
    rows = await gateway.usage_rows()
    assert [r["status"] for r in rows] == [400] * 4
    assert {r["provider"] for r in rows} == {"none"}


async def test_body_over_the_limit_gets_413(
    gateway_factory, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(fake[1], max_body_bytes="4096")
    key = (await gw.issue_key())["key"]
    big = orjson.dumps({**BODY, "system": "x" * 5000})
    status, _, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", big)
    assert_anthropic_error(status, body, 413, "request_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=chunked()) as response:
        assert_anthropic_error(response.status, await response.read(), 413, "request_too_large")
    rows = await gw.usage_rows()
    assert [row["status"] for row in rows] == [413, 413]


async def test_unreachable_upstream_gets_an_anthropic_shaped_5xx(gateway_factory, http: aiohttp.ClientSession) -> None:  # type: ignore[no-untyped-def]
    from conftest import free_port

    gw = await gateway_factory(f"http://127.0.0.1:{free_port()}")
    key = (await gw.issue_key())["key"]
    status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", orjson.dumps(BODY))
    assert_anthropic_error(status, body, 502, "api_error")
    assert headers["x-ccproxy-request-id"]
    [row] = await gw.usage_rows()
    assert (row["status"], row["error_class"]) == (502, "network_error")


async def test_upstream_that_never_answers_times_out(
    gateway_factory, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(fake[1], plan_first_byte_timeout="0.3", plan_nonstream_timeout="0.3")
    fake[0].queue("slow_headers:2")
    key = (await gw.issue_key())["key"]
    status, _, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", stream_body())
    assert_anthropic_error(status, body, 502, "api_error")
    [row] = await gw.usage_rows()
    assert row["error_class"] == "timeout"


@pytest.mark.parametrize(
    ("code", "klass"),
    [(400, "client_error"), (401, "client_error"), (429, "rate_limit"), (500, "server_error"), (529, "server_error")],
)
async def test_plan_errors_are_relayed_unchanged(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, code: int, klass: str
) -> None:
    fake[0].queue(f"status:{code}")
    key = (await gateway.issue_key())["key"]
    status, headers, body = await post(http, f"{gateway.url}/ak/{key}/v1/messages", stream_body())
    assert status == code
    assert orjson.loads(body)["request_id"] == "req_fakeerror"  # the plan's own body
    if code == 429:
        assert headers["retry-after"] == "7"
    [row] = await gateway.usage_rows()
    assert (row["status"], row["error_class"]) == (code, klass)


async def test_silent_upstream_gets_pings_between_events(
    gateway_factory, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(fake[1], ping_interval="0.2")
    fake[0].queue("silent:0.7")
    key = (await gw.issue_key())["key"]
    status, _, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", stream_body())
    assert status == 200
    pings = body.count(b'event: ping\ndata: {"type": "ping"}\n\n')
    assert pings >= 2
    # without the pings, the bytes are exactly the upstream's
    assert body.replace(b'event: ping\ndata: {"type": "ping"}\n\n', b"") == fake[0].sent[-1]


async def test_client_that_hangs_up_mid_stream_still_leaves_a_usage_row(
    gateway: Gateway, fake: tuple[FakeAnthropic, str]
) -> None:
    fake[0].queue("pace:100")
    key = (await gateway.issue_key())["key"]
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))
    body = stream_body()
    writer.write(
        f"POST /ak/{key}/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: sk-ant-x\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await reader.readuntil(b"message_start")
    writer.transport.abort()
    await asyncio.sleep(1.5)
    [row] = await gateway.usage_rows()
    assert row["input_tokens"] == 25
    assert row["error_class"] == "client_disconnected"


async def test_concurrent_requests_each_leave_exactly_one_row(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    rng = random.Random(7)
    bodies = [stream_body() if rng.random() < 0.5 else orjson.dumps(BODY) for _ in range(200)]
    results = await asyncio.gather(*(post(http, f"{gateway.url}/ak/{key}/v1/messages", b) for b in bodies))
    ids = {r[1]["x-ccproxy-request-id"] for r in results}
    assert len(ids) == 200 and all(r[0] == 200 for r in results)
    rows = await gateway.usage_rows()
    assert {str(r["request_id"]) for r in rows} == ids


async def test_unknown_paths_and_methods_get_anthropic_errors(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = (await gateway.issue_key())["key"]
    async with http.get(f"{gateway.url}/ak/{key}/v1/complete") as resp:
        assert_anthropic_error(resp.status, await resp.read(), 404, "not_found_error")
    async with http.get(f"{gateway.url}/ak/{key}/v1/messages") as resp:
        assert_anthropic_error(resp.status, await resp.read(), 405, "invalid_request_error")


async def test_health_ready_and_metrics(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health") as resp:
        assert resp.status == 200
    async with http.get(f"{gateway.url}/ready") as resp:
        assert (resp.status, (await resp.json())["status"]) == (200, "ready")
    key = (await gateway.issue_key())["key"]
    await post(http, f"{gateway.url}/ak/{key}/v1/messages", orjson.dumps(BODY))
    async with http.get(f"{gateway.url}/metrics") as resp:
        text = await resp.text()
    assert 'ccproxy_requests_total{provider="plan",status="2xx"} 1' in text
    assert "ccproxy_request_latency_ms_count 1" in text


def test_fake_answers_are_valid_anthropic_messages() -> None:
    message = message_json("tool_use", "m")
    assert message["stop_reason"] == "tool_use" and message["content"][1]["input"] == {"location": "Paris"}
