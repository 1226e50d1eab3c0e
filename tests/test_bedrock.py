"""The Bedrock client against the fake Bedrock runtime over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import re

import aiohttp
import orjson
import pytest
from aiobotocore.credentials import AioCredentials
from aiohttp import web

from bench import fake_anthropic
from bench.fake_bedrock import METRICS, FakeBedrock, anthropic_model
from gateway import bedrock, errors
from gateway import config as config_module

CONFIG = config_module.load({})
MODEL_ID = "us.anthropic.claude-opus-4-1-20250805-v1:0"
MODEL = anthropic_model(MODEL_ID)  # what Bedrock reports as `model`: claude-opus-4-1-20250805
REQUEST = orjson.dumps(
    {
        "model": "claude-opus-4-1-20250805",
        "stream": True,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "service_tier": "auto",
    }
)
BODY = bedrock.prepare_body(REQUEST, None, CONFIG)
BEARER = bedrock.BearerAuth("fake-bedrock-api-key")
SIGV4 = bedrock.SigV4Auth(AioCredentials("AKIDFAKEBEDROCK", "fake-secret-key"))
_IDS = re.compile(rb"msg_fake\d{8}")


# --- units -----------------------------------------------------------------------------


def test_prepare_body_removes_model_stream_and_stripped_fields_and_adds_version():
    raw = orjson.dumps(
        {
            "model": "m",
            "stream": True,
            "max_tokens": 5,
            "messages": [],
            "mcp_servers": [],
            "context_management": {},
            "container": "c",
            "service_tier": "auto",
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "metadata": {"user_id": "u"},
        }
    )
    body = orjson.loads(bedrock.prepare_body(raw, None, CONFIG))
    assert body == {
        "max_tokens": 5,
        "messages": [],
        "anthropic_version": "bedrock-2023-05-31",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u"},
    }


def test_prepare_body_keeps_only_allowed_betas_in_order_without_duplicates():
    header = (
        "claude-code-20250219, interleaved-thinking-2025-05-14,oauth-2025-04-20,"
        "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    )
    body = orjson.loads(bedrock.prepare_body(b'{"messages":[]}', header, CONFIG))
    assert body["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    only_unknown = orjson.loads(bedrock.prepare_body(b"{}", "oauth-2025-04-20", CONFIG))
    assert "anthropic_beta" not in only_unknown
    assert "anthropic_beta" not in orjson.loads(bedrock.prepare_body(b"{}", "", CONFIG))
    custom = CONFIG.replace(bedrock_beta_allowlist=("oauth-2025-04-20",), bedrock_strip_fields=())
    assert orjson.loads(bedrock.prepare_body(b'{"service_tier":"x"}', "oauth-2025-04-20", custom)) == {
        "service_tier": "x",
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["oauth-2025-04-20"],
    }


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"'])
def test_prepare_body_rejects_non_object_bodies(raw):
    with pytest.raises(errors.InvalidRequest):
        bedrock.prepare_body(raw, None, CONFIG)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("claude-sonnet-4-5", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("claude-sonnet-4-5-20250929", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("claude-sonnet-4-5-20250929[1m]", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("claude-sonnet-4-20250514", "us.anthropic.claude-sonnet-4-20250514-v1:0"),
        ("claude-sonnet-4-0", CONFIG.bedrock_default_model),
        ("claude-opus-4-1", "us.anthropic.claude-opus-4-1-20250805-v1:0"),
        ("claude-opus-4-1-20250805", "us.anthropic.claude-opus-4-1-20250805-v1:0"),
        ("claude-opus-4-20250514", "us.anthropic.claude-opus-4-20250514-v1:0"),
        ("claude-opus-4-5-20251101", "global.anthropic.claude-opus-4-5-20251101-v1:0"),
        ("claude-haiku-4-5-20251001", "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("claude-3-7-sonnet-latest", "us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
        ("claude-3-5-haiku-20241022", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("claude-3-5-sonnet-20240620", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("claude-3-5-sonnet-20241022", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("claude-opus-4-9", CONFIG.bedrock_default_model),  # unknown: never a wrong guess
        ("gpt-4", CONFIG.bedrock_default_model),
        ("", CONFIG.bedrock_default_model),
        (None, CONFIG.bedrock_default_model),
    ],
)
def test_resolve_model_maps_dated_and_undated_names(requested, expected):
    assert bedrock.resolve_model(requested, None, CONFIG) == expected


def test_resolve_model_prefers_the_keys_model_then_a_custom_map():
    assert bedrock.resolve_model("claude-sonnet-4-5", "eu.anthropic.x-v1:0", CONFIG) == "eu.anthropic.x-v1:0"
    assert bedrock.resolve_model("claude-x", None, CONFIG, {"claude-x": "y"}) == "y"


def test_endpoint_and_base_model_id():
    assert bedrock.endpoint("eu-west-1", CONFIG) == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    override = CONFIG.replace(bedrock_endpoint_url="http://127.0.0.1:9")
    assert bedrock.endpoint("eu-west-1", override) == "http://127.0.0.1:9"
    for profile in ("global.", "us.", "eu.", "apac.", "us-gov.", ""):
        assert bedrock.base_model_id(profile + "anthropic.claude-x-v1:0") == "anthropic.claude-x-v1:0"


def test_auth_reprs_hide_credentials():
    assert "fake-bedrock-api-key" not in repr(BEARER)
    assert "fake-secret-key" not in repr(SIGV4)


# --- against the fake -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def fake():
    server = FakeBedrock()
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"  # type: ignore[attr-defined]
    yield server
    await runner.cleanup()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    fake,
    session,
    *,
    scenario=None,
    stream=True,
    auth=BEARER,
    body=BODY,
    model_id=MODEL_ID,
    timeout=5.0,
    on_event=None,
):
    if scenario:
        fake.queue(scenario)
    return await bedrock.invoke(
        session,
        base_url=fake.base_url,
        model_id=model_id,
        body=body,
        stream=stream,
        auth=auth,
        region="us-east-1",
        timeout=timeout,
        on_event=on_event,
    )


async def read_all(response: bedrock.BedrockResponse) -> bytes:
    async with response:
        return b"".join([chunk async for chunk in response])


def expected_sse(kind: str) -> bytes:
    """What the fake Anthropic streams for the same answer, with Bedrock's one addition:
    message_stop carries `amazon-bedrock-invocationMetrics`. The translator relays each
    event's JSON exactly as Bedrock sent it (never re-encoded), so that field stays."""
    out = []
    for event in fake_anthropic.stream_events(kind, MODEL):
        if event.startswith(b"event: message_stop\n"):
            metrics = {"inputTokenCount": 25, "outputTokenCount": 12, **METRICS}
            event = fake_anthropic.sse(
                "message_stop",
                {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics},
            )
        out.append(event)
    return b"".join(out)


@pytest.mark.parametrize("auth", [BEARER, SIGV4], ids=["bearer", "sigv4"])
@pytest.mark.parametrize("kind", ["text", "tool_use", "thinking", "split:5"])
async def test_stream_equals_fake_anthropic_sse_plus_invocation_metrics(fake, session, auth, kind):
    events: list[bytes] = []
    response = await call(fake, session, scenario=kind, auth=auth, on_event=lambda t, d: events.append(t))
    assert (response.status, response.stream, response.model_id) == (200, True, MODEL_ID)
    assert response.request_id == "fake-stream"
    out = await read_all(response)
    shape = kind.split(":")[0] if kind != "split:5" else "text"
    assert _IDS.sub(b"msg_X", out) == _IDS.sub(b"msg_X", expected_sse(shape))
    assert events[0] == b"message_start" and events[-1] == b"message_stop"
    seen = fake.requests[-1]
    assert seen.path == f"/model/{MODEL_ID}/invoke-with-response-stream"
    assert seen.body == BODY
    assert seen.headers["Accept"] == bedrock.EVENTSTREAM
    assert seen.headers["Authorization"].startswith(
        "Bearer " if auth is BEARER else "AWS4-HMAC-SHA256 Credential=AKIDFAKEBEDROCK/"
    )


async def test_sigv4_with_session_token_and_refreshed_credentials(fake, session):
    class Rotating:
        """Stands in for a refreshable task-role credential: new keys per freeze."""

        def __init__(self) -> None:
            self.calls = 0

        async def get_frozen_credentials(self):
            self.calls += 1
            return AioCredentials("AKIDFAKEBEDROCK", "fake-secret-key", f"token-{self.calls}")

    creds = Rotating()
    auth = bedrock.SigV4Auth(creds)
    for expected in ("token-1", "token-2"):
        response = await call(fake, session, stream=False, auth=auth)
        response.close()
        assert fake.requests[-1].headers["X-Amz-Security-Token"] == expected


async def test_non_stream_body_is_the_message_as_bedrock_sent_it(fake, session):
    for auth in (BEARER, SIGV4):
        response = await call(fake, session, scenario="tool_use", stream=False, auth=auth)
        async with response:
            assert (response.status, response.stream) == (200, False)
            message = orjson.loads(response.body)
        expected = fake_anthropic.message_json("tool_use", MODEL)
        assert message == {**expected, "id": message["id"]}
        assert fake.requests[-1].path == f"/model/{MODEL_ID}/invoke"
        assert [c async for c in response] == []


ERROR_CASES = [
    ("throttle", errors.RateLimited, 429, "rate_limit_error"),
    ("denied", errors.FallbackAccessDenied, 500, "api_error"),
    ("validation", errors.InvalidRequest, 400, "invalid_request_error"),
    ("unavailable", errors.Overloaded, 529, "overloaded_error"),
    ("error:424:ModelStreamErrorException", errors.UpstreamFailed, 500, "api_error"),
    ("error:408:ModelTimeoutException", errors.UpstreamFailed, 500, "api_error"),
    ("error:500:InternalServerException", errors.Overloaded, 529, "overloaded_error"),
    ("error:404:ResourceNotFoundException", errors.Overloaded, 529, "overloaded_error"),
    ("error:400:ServiceQuotaExceededException", errors.RateLimited, 429, "rate_limit_error"),
    ("error:401:UnrecognizedClientException", errors.FallbackAccessDenied, 500, "api_error"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("scenario", "error", "status", "error_type"), ERROR_CASES)
async def test_errors_before_first_byte_raise_spec_mapped_errors(
    fake, session, stream, scenario, error, status, error_type
):
    with pytest.raises(error) as info:
        await call(fake, session, scenario=scenario, stream=stream)
    assert type(info.value) is error
    assert (info.value.status, info.value.error_type) == (status, error_type)
    assert info.value.message  # Bedrock's own message, for Claude Code to show


async def test_wrong_credentials_are_the_operators_problem_never_a_401(fake, session):
    """The developer cannot fix the gateway's Bedrock credentials (SPEC §4)."""
    with pytest.raises(errors.FallbackAccessDenied, match="operator must fix"):
        await call(fake, session, auth=bedrock.BearerAuth("wrong"))
    bad_sig = bedrock.SigV4Auth(AioCredentials("AKIDFAKEBEDROCK", "not-the-secret"))
    with pytest.raises(errors.FallbackAccessDenied):
        await call(fake, session, auth=bad_sig, stream=False)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_throttling_says_when_to_retry(fake, session, stream):
    fake.queue("throttle")
    with pytest.raises(errors.RateLimited) as info:
        await call(fake, session, stream=stream)
    assert int(info.value.headers["retry-after"]) > 0


async def test_body_bedrock_would_reject_is_invalid_request(fake, session):
    with pytest.raises(errors.InvalidRequest, match="anthropic_version"):
        await call(fake, session, body=REQUEST)  # not prepared
    unprepared = orjson.dumps({**orjson.loads(BODY), "model": "m"})
    with pytest.raises(errors.InvalidRequest, match="model"):
        await call(fake, session, body=unprepared, stream=False)


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ("exception_first", errors.RateLimited),
        ("exception_first:modelStreamErrorException", errors.UpstreamFailed),
        ("exception_first:validationException", errors.InvalidRequest),
        ("exception_first:serviceUnavailableException", errors.Overloaded),
    ],
)
async def test_exception_as_first_frame_raises_before_first_byte(fake, session, scenario, error):
    with pytest.raises(error):
        await call(fake, session, scenario=scenario)


async def test_midstream_exception_becomes_an_sse_error_event(fake, session):
    events: list[bytes] = []
    response = await call(fake, session, scenario="exception_midstream", on_event=lambda t, d: events.append(t))
    out = await read_all(response)
    head = b"".join(fake_anthropic.stream_events("text", MODEL)[:4])
    error = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": "fake midstream failure"}})
    assert _IDS.sub(b"x", out) == _IDS.sub(b"x", head + b"event: error\ndata: " + error + b"\n\n")
    assert events == [
        b"message_start",
        b"ping",
        b"content_block_start",
        b"content_block_delta",
        b"error",
    ]
    assert response.translator is not None and response.translator.emitted == 4


async def test_transport_failures_before_first_byte_are_overloaded(fake, session):
    with pytest.raises(errors.Overloaded, match="timed out"):
        await call(fake, session, scenario="slow_headers:2", timeout=0.3)
    with pytest.raises(errors.Overloaded, match="timed out"):  # headers quick, first frame not
        await call(fake, session, scenario="pace:1000", timeout=0.3)
    with pytest.raises(errors.Overloaded):
        await call(fake, session, scenario="reset")
    with pytest.raises(errors.Overloaded):
        await bedrock.invoke(
            session,
            base_url="http://127.0.0.1:9",
            model_id=MODEL_ID,
            body=BODY,
            stream=True,
            auth=BEARER,
            region="us-east-1",
            timeout=2,
        )


async def test_count_tokens_uses_the_base_model_and_answers_in_anthropic_form(fake, session):
    count_body = bedrock.prepare_body(
        orjson.dumps(
            {
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "hi"}],
                "thinking": {"type": "enabled", "budget_tokens": 2048},
            }
        ),
        None,
        CONFIG,
    )
    for auth in (BEARER, SIGV4):
        out = await bedrock.count_tokens(
            session,
            base_url=fake.base_url,
            model_id="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            body=count_body,
            auth=auth,
            region="us-east-1",
            timeout=5,
        )
        assert out == b'{"input_tokens":42}'
        seen = fake.requests[-1]
        assert seen.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/count-tokens"
        inner = orjson.loads(base64.b64decode(orjson.loads(seen.body)["input"]["invokeModel"]["body"]))
        assert inner["max_tokens"] == 2049 and inner["anthropic_version"] == "bedrock-2023-05-31"
    fake.queue("throttle")
    with pytest.raises(errors.RateLimited):
        await bedrock.count_tokens(
            session,
            base_url=fake.base_url,
            model_id=MODEL_ID,
            body=BODY,
            auth=BEARER,
            region="us-east-1",
            timeout=5,
        )


async def test_connection_is_released_on_early_close_and_on_cancellation(fake):
    # One connection only: a leaked one would make the next call hang.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        response = await call(fake, session, scenario="pace:50")
        first = await response.__anext__()
        assert first.startswith(b"event: message_start")
        response.close()
        assert response._resp.closed

        response = await call(fake, session, scenario="pace:50")

        async def consume() -> None:
            async with response:
                async for _ in response:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.12)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert response._resp.closed

        async with asyncio.timeout(3):
            for stream in (True, False):
                response = await call(fake, session, stream=stream)
                assert await read_all(response) or response.body
        connector = session.connector
        assert connector is not None
        # Fully read answers go back to the pool for reuse.
        assert sum(len(v) for v in connector._conns.values()) == 1  # type: ignore[attr-defined]


async def test_large_event_stream_in_one_read(fake, session):
    response = await call(fake, session, scenario="events:500")
    out = await read_all(response)
    assert out.count(b"event: content_block_delta\n") == 500
    assert out.endswith(
        b"event: message_stop\ndata: "
        + orjson.dumps(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 25,
                    "outputTokenCount": 500,
                    **METRICS,
                },
            }
        )
        + b"\n\n"
    )
