"""Every row of the Bedrock feature table, checked against the validating fake Bedrock.

The fake (bench/fake_bedrock.py) keeps its own list of what Bedrock accepts, so a
mistake in gateway/bedrock_features.py fails here with Bedrock's wording.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from conftest import start_site

from bench.fake_bedrock import FakeBedrock, invoke_body_problem
from gateway import bedrock, bedrock_features, errors
from gateway import config as config_module

CONFIG = config_module.load({})
TOOL = {"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}
BASE: dict[str, Any] = {
    "model": "claude-opus-4-8",
    "stream": True,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "tools": [TOOL],
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def request(**extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body.update(extra)
    return body


def prepared(body: dict[str, Any], beta: str | None, config: config_module.Config = CONFIG) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(bedrock.prepare_body(orjson.dumps(body), beta, config))
    return out


def accepted(sent: dict[str, Any]) -> dict[str, Any]:
    problem = invoke_body_problem(sent)
    assert problem is None, problem
    return sent


# --- the fake refuses what Bedrock refuses --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"context_management": {"edits": []}}, "context_management: Extra inputs are not permitted"),
        ({"output_config": {"effort": "high"}}, "output_config: Extra inputs are not permitted"),
        ({"service_tier": "auto"}, "service_tier: Extra inputs are not permitted"),
        ({"anthropic_beta": ["oauth-2025-04-20"]}, "invalid beta flag"),
        ({"tools": [{**TOOL, "strict": True}]}, "tools.0.strict: Extra inputs are not permitted"),
        ({"tools": [{**TOOL, "defer_loading": True}]}, "tools.0.defer_loading: Extra inputs are not permitted"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "does not match any of the expected tags"),
    ],
)
def test_fake_bedrock_refuses_fields_and_betas_outside_its_accepted_set(body, message):
    sent = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "messages": [], **body}
    problem = invoke_body_problem(sent)
    assert problem is not None and message in problem


async def test_fake_bedrock_answers_a_refused_body_with_a_validation_exception(http):
    fake = FakeBedrock()
    runner, url = await start_site(fake.app())
    try:
        body = orjson.dumps(
            {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1, "messages": [], "speed": "fast"}
        )
        async with http.post(
            f"{url}/model/m/invoke", data=body, headers={"Authorization": f"Bearer {fake.api_key}"}
        ) as resp:
            assert resp.status == 400
            assert resp.headers["x-amzn-ErrorType"].startswith("ValidationException")
            assert (await resp.json())["message"] == "speed: Extra inputs are not permitted"
    finally:
        await runner.cleanup()


# --- one test per row -------------------------------------------------------------------------


def test_adaptive_thinking_is_forwarded_as_is():
    sent = accepted(prepared(request(thinking={"type": "adaptive"}), None))
    assert sent["thinking"] == {"type": "adaptive"}


def test_interleaved_thinking_beta_moves_into_anthropic_beta():
    sent = accepted(prepared(request(), "claude-code-20250219,interleaved-thinking-2025-05-14"))
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]


def test_context_management_is_forwarded_with_its_beta():
    body = request(context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]})
    sent = accepted(prepared(body, "context-management-2025-06-27"))
    assert sent["context_management"] == body["context_management"]
    assert sent["anthropic_beta"] == ["context-management-2025-06-27"]


def test_context_management_is_stripped_together_with_its_beta_when_the_operator_strips_it():
    config = CONFIG.replace(bedrock_strip_fields=("context_management",))
    sent = accepted(prepared(request(context_management={"edits": []}), "context-management-2025-06-27", config))
    assert "context_management" not in sent and "anthropic_beta" not in sent


def test_context_management_is_stripped_when_its_beta_is_not_allowed_on_bedrock():
    allow = tuple(b for b in CONFIG.bedrock_beta_allowlist if b != "context-management-2025-06-27")
    config = CONFIG.replace(bedrock_beta_allowlist=allow)
    sent = accepted(prepared(request(context_management={"edits": []}), "context-management-2025-06-27", config))
    assert "context_management" not in sent and "anthropic_beta" not in sent


def test_1m_context_beta_moves_into_anthropic_beta():
    sent = accepted(prepared(request(), "context-1m-2025-08-07"))
    assert sent["anthropic_beta"] == ["context-1m-2025-08-07"]


def test_defer_loading_goes_with_bedrocks_name_for_the_tool_search_beta():
    body = request(tools=[{**TOOL, "defer_loading": True}])
    sent = accepted(prepared(body, "advanced-tool-use-2025-11-20"))
    assert sent["tools"][0]["defer_loading"] is True
    assert sent["anthropic_beta"] == ["tool-search-tool-2025-10-19"]


def test_input_examples_go_with_bedrocks_tool_examples_beta():
    body = request(tools=[{**TOOL, "input_examples": [{"file_path": "/x"}]}])
    sent = accepted(prepared(body, "advanced-tool-use-2025-11-20"))
    assert sent["tools"][0]["input_examples"] == [{"file_path": "/x"}]
    assert sent["anthropic_beta"] == ["tool-examples-2025-10-29"]


def test_strict_tool_schemas_are_stripped_together_with_the_structured_outputs_beta():
    body = request(tools=[{**TOOL, "strict": True}])
    sent = accepted(prepared(body, "structured-outputs-2025-11-13"))
    assert "strict" not in sent["tools"][0]
    assert "anthropic_beta" not in sent


def test_effort_is_forwarded_with_its_beta():
    sent = accepted(prepared(request(output_config={"effort": "high"}), "effort-2025-11-24"))
    assert sent["output_config"] == {"effort": "high"}
    assert sent["anthropic_beta"] == ["effort-2025-11-24"]


@pytest.mark.parametrize(
    "extra",
    [
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        {"output_format": {"type": "json_schema", "schema": {"type": "object"}}},
    ],
)
def test_structured_outputs_get_a_clean_400_naming_the_feature(extra):
    with pytest.raises(errors.InvalidRequest, match=r"structured outputs .* Amazon Bedrock"):
        prepared(request(**extra), "structured-outputs-2025-11-13")


def test_fine_grained_tool_streaming_beta_moves_and_eager_input_streaming_is_forwarded():
    body = request(tools=[{**TOOL, "eager_input_streaming": True}])
    sent = accepted(prepared(body, "fine-grained-tool-streaming-2025-05-14"))
    assert sent["tools"][0]["eager_input_streaming"] is True
    assert sent["anthropic_beta"] == ["fine-grained-tool-streaming-2025-05-14"]


def test_prompt_caching_with_5m_and_1h_ttls_is_forwarded_as_is():
    system = [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    sent = accepted(prepared(request(system=system), "extended-cache-ttl-2025-04-11"))
    assert sent["system"] == system
    assert sent["anthropic_beta"] == ["extended-cache-ttl-2025-04-11"]


def test_cache_control_scope_is_stripped_together_with_its_beta():
    system = [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "scope": "global"}}]
    sent = accepted(prepared(request(system=system), "prompt-caching-scope-2026-01-05"))
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "anthropic_beta" not in sent


def test_mid_conversation_system_messages_are_forwarded_with_their_beta():
    messages = [*BASE["messages"], {"role": "system", "content": "reminder"}]
    sent = accepted(prepared(request(messages=messages), "mid-conversation-system-2026-04-07"))
    assert sent["messages"][-1]["role"] == "system"
    assert sent["anthropic_beta"] == ["mid-conversation-system-2026-04-07"]


def test_mid_conversation_system_messages_get_a_400_when_the_operator_disallows_the_beta():
    allow = tuple(b for b in CONFIG.bedrock_beta_allowlist if b != "mid-conversation-system-2026-04-07")
    messages = [*BASE["messages"], {"role": "system", "content": "reminder"}]
    with pytest.raises(errors.InvalidRequest, match="mid-conversation system messages"):
        prepared(request(messages=messages), None, CONFIG.replace(bedrock_beta_allowlist=allow))


def test_images_and_pdfs_are_forwarded_as_is():
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        {"type": "text", "text": "what is this?"},
    ]
    sent = accepted(prepared(request(messages=[{"role": "user", "content": content}]), None))
    assert sent["messages"][0]["content"] == content


@pytest.mark.parametrize("tool_type", ["web_search_20250305", "web_fetch_20250910", "code_execution_20250825"])
def test_server_tools_get_a_clean_400_naming_the_feature(tool_type):
    body = request(tools=[TOOL, {"type": tool_type, "name": "server"}])
    with pytest.raises(errors.InvalidRequest, match=r"server tools \(web search.*Amazon Bedrock"):
        prepared(body, "web-search-2025-03-05")


@pytest.mark.parametrize(
    ("field", "beta"),
    [
        ("mcp_servers", "mcp-client-2025-04-04"),
        ("container", "skills-2025-10-02"),
        ("speed", "fast-mode-2026-02-01"),
        ("service_tier", None),
    ],
)
def test_fields_bedrock_lacks_are_stripped_together_with_their_beta(field, beta):
    sent = accepted(prepared(request(**{field: "x"}), beta))
    assert field not in sent and "anthropic_beta" not in sent


def test_first_party_only_betas_are_dropped_since_no_field_carries_them():
    header = "claude-code-20250219,oauth-2025-04-20,thinking-token-count-2026-05-13,redact-thinking-2026-02-12"
    assert "anthropic_beta" not in accepted(prepared(request(), header))


# --- the invariant, under every single-setting change ------------------------------------------


def _full_request() -> tuple[dict[str, Any], str]:
    tools = [{**TOOL, "defer_loading": True, "input_examples": [{}], "strict": True, "eager_input_streaming": True}]
    system = [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h", "scope": "global"}}]
    body = request(
        tools=tools,
        system=system,
        thinking={"type": "adaptive"},
        context_management={"edits": []},
        output_config={"effort": "high"},
        mcp_servers=[],
        speed="fast",
        service_tier="auto",
        messages=[*BASE["messages"], {"role": "system", "content": "r"}],
    )
    betas = sorted({b for f in bedrock_features.FEATURES for b in f.betas} - {"web-search-2025-03-05"})
    return body, ",".join(betas)


def _variants() -> list[tuple[str, config_module.Config]]:
    out = [("defaults", CONFIG)]
    for beta in CONFIG.bedrock_beta_allowlist:
        allow = tuple(b for b in CONFIG.bedrock_beta_allowlist if b != beta)
        out.append((f"without {beta}", CONFIG.replace(bedrock_beta_allowlist=allow)))
    stripped = CONFIG.bedrock_strip_fields
    fields = [f for feature in bedrock_features.FEATURES for f in feature.fields]
    out.extend(
        (f"strip {field}", CONFIG.replace(bedrock_strip_fields=(*stripped, field)))
        for field in fields
        if not field.startswith(("tools.type:", "messages."))
    )
    return out


@pytest.mark.parametrize(("label", "config"), _variants(), ids=[v[0] for v in _variants()])
def test_no_field_travels_without_its_beta_nor_a_beta_without_its_field(label, config):
    body, header = _full_request()
    try:
        sent = prepared(body, header, config)
    except errors.InvalidRequest as exc:
        assert "not supported when this request is served by Amazon Bedrock" in exc.message
        return
    accepted(sent)
    betas = set(sent.get("anthropic_beta", []))
    for feature in bedrock_features.FEATURES:
        used = [p for p in feature.fields if bedrock_features.present(sent, p)]
        if used and feature.betas:
            assert set(feature.target_betas) <= betas, (feature.name, used, betas)
        if feature.fields and set(feature.target_betas) & betas and not used:
            shared = any(
                other is not feature and set(other.target_betas) & set(feature.target_betas)
                for other in bedrock_features.FEATURES
            )
            assert shared, (feature.name, betas)


def test_the_table_gives_every_row_one_of_the_four_answers():
    plan = bedrock.feature_plan(CONFIG)
    rows = plan.table()
    assert len(rows) == len(bedrock_features.FEATURES)
    assert {r["answer"] for r in rows} <= {"forward", "beta", "strip", "reject"}
    names = {r["feature"]: r["answer"] for r in rows}
    assert names["interleaved thinking"] == "beta"
    assert names["server tools (web search, web fetch, code execution)"] == "reject"
    assert names["strict tool schemas (strict)"] == "strip"
