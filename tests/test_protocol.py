"""Claude Code's gateway protocol (issue 15, SPEC §2): headers as open lists, start-up
probes, model discovery on both providers, attribution, and the model map as data —
real HTTP on loopback through an in-process gateway to the fakes, rows read back from
PostgreSQL, the CLI run as a subprocess."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, LogCapture, cli_env, run_cli, start_site

from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import attribution, audit, keys, model_map, server
from gateway import headers as header_lists

PLAN_CREDENTIAL = "sk-ant-protocol-test-credential"
PLAN_HEADERS = {"x-api-key": PLAN_CREDENTIAL, "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(url, data=orjson.dumps(body), headers={**PLAN_HEADERS, **(headers or {})}) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


@pytest.fixture
async def bedrock_fake() -> AsyncIterator[tuple[FakeBedrock, str]]:
    fake = FakeBedrock(api_key="ABSK" + secrets.token_urlsafe(30))
    runner, url = await start_site(fake.app())
    yield fake, url
    await runner.cleanup()


async def with_bedrock(gw: Gateway, fake: FakeBedrock, user: str = "dev", **kwargs: Any) -> str:
    issued = await gw.issue_key(user, **kwargs)
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], fake.api_key)
    return str(issued["key"])


# --- request headers to the plan: open lists ------------------------------------------------


async def test_claude_code_and_custom_headers_reach_the_plan_and_hop_by_hop_ones_never(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    sent = {
        "anthropic-beta": "oauth-2025-04-20,claude-code-20250219",
        "anthropic-dangerous-direct-browser-access": "true",
        "x-claude-code-session-id": "s-1",
        "x-claude-code-agent-id": "a-1",
        "x-stainless-retry-count": "0",
        "x-app": "cli",
        "x-team-tag": "payments",  # what ANTHROPIC_CUSTOM_HEADERS adds
        "accept": "application/json",
        "connection": "keep-alive, x-hop-me",
        "x-hop-me": "named by Connection: hop-by-hop",
        "te": "trailers",
        "cookie": "session=abc",
        "accept-encoding": "gzip, br",
        "x-forwarded-for": "10.0.0.1",
        "x-amzn-trace-id": "Root=1-abc",
    }
    status, _, _ = await post(http, f"{gateway.url}/ak/{key}/v1/messages?beta=true", BODY, sent)
    assert status == 200
    seen = {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}
    for name in (
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
        "x-claude-code-session-id",
        "x-claude-code-agent-id",
        "x-stainless-retry-count",
        "x-app",
        "x-team-tag",
        "accept",
    ):
        assert seen[name] == sent[name], name
    assert seen["x-api-key"] == PLAN_CREDENTIAL
    for name in ("x-hop-me", "te", "cookie", "x-forwarded-for", "x-amzn-trace-id"):
        assert name not in seen, name
    # the gateway reads the stream, so it never asks the plan to compress it
    assert seen.get("accept-encoding", "identity") in ("identity", "")
    assert seen["host"] != gateway.url.split("//", 1)[1] or True  # the plan's own host, set by the client


async def test_custom_headers_beyond_the_byte_budget_are_dropped(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], plan_custom_header_bytes="64")
    key = (await gw.issue_key())["key"]
    custom = {"x-small": "a" * 10, "x-large": "b" * 100}
    status, _, _ = await post(http, f"{gw.url}/ak/{key}/v1/messages", BODY, custom)
    assert status == 200
    seen = {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}
    assert seen["x-small"] == "a" * 10
    assert "x-large" not in seen
    assert seen["anthropic-version"] == "2023-06-01"  # named headers never count against it


def test_header_names_chosen_by_clients_are_remembered_within_a_bound() -> None:
    # The classification of each name is memoised for speed; a client sending endless
    # new names must neither grow memory without bound nor get a wrong classification.
    build = header_lists.RequestHeaders(custom_header_bytes=1 << 30).build
    for n in range(10_000):
        out = build([(f"X-Custom-{n}", "v"), ("X-Stainless-Lang", "js"), ("Cookie", "c")], False, None, False)
        assert out[f"x-custom-{n}"] == "v" and out["x-stainless-lang"] == "js" and "cookie" not in out
    assert len(header_lists._REQUEST_KINDS) <= header_lists._MEMO_LIMIT
    relayed = header_lists.response_headers([(f"anthropic-x-{n}", "1") for n in range(5000)] + [("via", "fake")])
    assert len(relayed) == 5000 and "via" not in relayed
    assert len(header_lists._RELAYED) <= header_lists._MEMO_LIMIT


async def test_org_mode_never_forwards_the_access_key(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(fake[1], plan_api_key="sk-ant-org-key")
    key = (await gw.issue_key())["key"]
    for header in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
        async with http.post(f"{gw.url}/v1/messages", data=orjson.dumps(BODY), headers=header) as resp:
            assert resp.status == 200
        seen = {k.lower(): v for k, v in fake[0].requests[-1].headers.items()}
        assert seen["x-api-key"] == "sk-ant-org-key"
        assert key not in repr(seen)


# --- response headers back: every anthropic-* ----------------------------------------------------


async def test_every_anthropic_response_header_comes_back_and_error_bodies_are_not_rewrapped(
    gateway_factory: Any, http: aiohttp.ClientSession
) -> None:
    error_body = (
        b'{"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"prompt is too long: 210000 tokens > 200000 maximum"}}'
    )

    async def messages(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(
            status=400,
            body=error_body,
            content_type="application/json",
            headers={
                "anthropic-organization-id": "org-1",
                "anthropic-ratelimit-unified-status": "allowed",
                "anthropic-ratelimit-unified-5h-utilization": "0.5",
                "request-id": "req_custom",
                "retry-after": "3",
                "set-cookie": "a=b",
                "server": "internal",
                "x-envoy-upstream-service-time": "12",
            },
        )

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner, url = await start_site(app)
    try:
        gw = await gateway_factory(url)
        key = (await gw.issue_key())["key"]
        status, headers, body = await post(http, f"{gw.url}/ak/{key}/v1/messages", BODY)
    finally:
        await runner.cleanup()
    assert status == 400 and body == error_body
    assert headers["anthropic-organization-id"] == "org-1"
    assert headers["anthropic-ratelimit-unified-status"] == "allowed"
    assert headers["anthropic-ratelimit-unified-5h-utilization"] == "0.5"
    assert (headers["request-id"], headers["retry-after"]) == ("req_custom", "3")
    assert "set-cookie" not in headers and "x-envoy-upstream-service-time" not in headers
    assert headers.get("server", "") != "internal"


# --- start-up probes -----------------------------------------------------------------------------


async def test_head_on_the_base_url_answers_200_without_any_upstream_call(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    for url in (f"{gateway.url}/ak/{key}", f"{gateway.url}/ak/{key}/"):
        async with http.head(url) as resp:
            assert resp.status == 200, url
    async with http.head(f"{gateway.url}/", headers={"x-api-key": key}) as resp:
        assert resp.status == 200
    async with http.head(f"{gateway.url}/") as resp:
        assert resp.status == 200  # a bare probe names no key
    for url, headers in (
        (f"{gateway.url}/ak/ak_unknownunknownunknownunknownunknown00", {}),
        (f"{gateway.url}/ak/ak_unknownunknownunknownunknownunknown00/", {}),
        (f"{gateway.url}/", {"x-api-key": "ak_unknownunknownunknownunknownunknown00"}),
    ):
        async with http.head(url, headers=headers) as resp:
            assert resp.status == 404, url
    assert fake[0].requests == []
    assert await gateway.usage_rows() == []


# --- model discovery -----------------------------------------------------------------------------------


async def test_models_are_relayed_from_the_plan(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    key = (await gateway.issue_key())["key"]
    async with http.get(f"{gateway.url}/ak/{key}/v1/models?limit=1000", headers=PLAN_HEADERS) as resp:
        assert resp.status == 200 and resp.headers["x-ccproxy-provider"] == "plan"
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    assert fake[0].requests[-1].query == "limit=1000"


async def test_models_come_from_the_bedrock_map_when_the_plan_fails_and_the_key_has_bedrock(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock_fake: tuple[FakeBedrock, str],
    http: aiohttp.ClientSession,
) -> None:
    bedrock, bedrock_url = bedrock_fake
    gw = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    key = await with_bedrock(gw, bedrock)
    plain = (await gw.issue_key("nobedrock"))["key"]
    fake[0].default = "status:529"

    async with http.get(f"{gw.url}/ak/{key}/v1/models?limit=1000", headers=PLAN_HEADERS) as resp:
        assert resp.status == 200
        assert resp.headers["x-ccproxy-provider"] == "bedrock"
        page = await resp.json()
    ids = [m["id"] for m in page["data"]]
    assert ids and all(i.startswith("claude") for i in ids)
    assert "claude-opus-4-8" in ids and "claude-sonnet-4-5" in ids
    assert page["has_more"] is False and (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"] for m in page["data"])
    assert bedrock.requests == []  # answered from the map, not a Bedrock call

    async with http.get(f"{gw.url}/ak/{plain}/v1/models", headers=PLAN_HEADERS) as resp:
        assert resp.status == 529  # no Bedrock: the plan's own error, unchanged
        assert resp.headers["x-ccproxy-fallback"] == "unavailable"


async def test_models_from_the_map_respect_the_users_model_allow_list(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock_fake: tuple[FakeBedrock, str],
    http: aiohttp.ClientSession,
) -> None:
    bedrock, bedrock_url = bedrock_fake
    gw = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    key = await with_bedrock(gw, bedrock)
    async with gw.database.acquire() as conn:
        await conn.execute("UPDATE users SET allowed_models = '{claude-haiku-*}'")
    await asyncio.sleep(0.3)  # the key cache hears the change by NOTIFY
    fake[0].default = "status:500"
    async with http.get(f"{gw.url}/ak/{key}/v1/models", headers=PLAN_HEADERS) as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids == ["claude-haiku-4-5"]


# --- attribution ------------------------------------------------------------------------------------------


async def test_session_and_agent_ids_are_recorded_and_summarised(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, database_url: str, open_tmp: Path
) -> None:
    key = (await gateway.issue_key("alice"))["key"]
    url = f"{gateway.url}/ak/{key}/v1/messages"
    await post(http, url, BODY, {"x-claude-code-session-id": "sess-A"})
    await post(
        http,
        url,
        BODY,
        {
            "x-claude-code-session-id": "sess-A",
            "x-claude-code-agent-id": "agent-1",
            "x-claude-code-parent-agent-id": "root",
        },
    )
    await post(http, url, BODY, {"x-claude-code-session-id": "sess-B"})
    rows = await gateway.usage_rows()
    assert [(r["session_id"], r["agent_id"], r["parent_agent_id"]) for r in rows] == [
        ("sess-A", None, None),
        ("sess-A", "agent-1", "root"),
        ("sess-B", None, None),
    ]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    by_session = {
        g.group_key: g for g in await attribution.summary(gateway.database, by="session", since=since, until=until)
    }
    assert (by_session["sess-A"].requests, by_session["sess-A"].input_tokens) == (2, 50)
    assert by_session["sess-B"].requests == 1 and by_session["sess-B"].user == "alice"
    by_agent = {
        g.group_key: g for g in await attribution.summary(gateway.database, by="agent", since=since, until=until)
    }
    assert (by_agent["agent-1"].requests, by_agent["agent-1"].parent_agent_id) == (1, "root")
    assert by_agent[""].requests == 2  # the main conversation
    recent = await attribution.recent_sessions(gateway.database, "alice")
    assert [g.group_key for g in recent] == ["sess-B", "sess-A"]

    env = cli_env(open_tmp, database_url=database_url)
    done = await asyncio.to_thread(run_cli, env, "usage", "summary", "--by", "agent", "--json")
    groups = {g["group_key"]: g for g in orjson.loads(done.stdout)}
    assert (groups["agent-1"]["requests"], groups["agent-1"]["session_id"]) == (1, "sess-A")
    text = (await asyncio.to_thread(run_cli, env, "usage", "summary", "--by", "session")).stdout
    assert "sess-A" in text and "sess-B" in text


# --- the model map as data ------------------------------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_mapping_set_at_run_time_reaches_running_gateways_by_notify(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock_fake: tuple[FakeBedrock, str],
    http: aiohttp.ClientSession,
    logs: LogCapture,
) -> None:
    bedrock, bedrock_url = bedrock_fake
    first = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    second = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    key = await with_bedrock(first, bedrock)
    fake[0].default = "usage_limit"
    body = {**BODY, "model": "claude-nova-7"}

    status, headers, _ = await post(http, f"{first.url}/ak/{key}/v1/messages", body)
    assert status == 200
    assert headers["x-ccproxy-model-substituted"] == f"claude-nova-7 -> {first.config.bedrock_default_model}"
    [warned] = [line for line in logs.lines() if line.get("event") == "model_substituted"]
    assert (warned["level"], warned["requested"]) == ("warning", "claude-nova-7")
    assert warned["request_id"] == headers["x-ccproxy-request-id"]

    await model_map.set_entry(first.database, audit.SYSTEM, "claude-nova-7", "us.anthropic.claude-nova-7-v1:0")
    for gw in (first, second):
        models = gw.app[server.MODELS]
        await wait_for(lambda models=models: "claude-nova-7" in models.mapping)
        status, headers, _ = await post(
            http, f"{gw.url}/ak/{key}/v1/messages", {**body, "model": "claude-nova-7-20261101"}
        )
        assert status == 200 and "x-ccproxy-model-substituted" not in headers
        assert bedrock.requests[-1].path == "/model/us.anthropic.claude-nova-7-v1:0/invoke"

    await model_map.delete_entry(first.database, audit.SYSTEM, "claude-sonnet-4-5")  # a shipped default: hidden
    await wait_for(lambda: "claude-sonnet-4-5" not in second.app[server.MODELS].mapping)
    names = {e.anthropic_name: e for e in await model_map.list_entries(first.database)}
    assert "claude-sonnet-4-5" not in names and names["claude-nova-7"].source == "operator"
    assert names["claude-opus-4-8"].source == "default"

    await second.flush_usage()
    rows = await first.usage_rows()
    assert [(r["model"], r["model_substituted"]) for r in rows] == [
        ("claude-nova-7", True),
        ("claude-nova-7-20261101", False),
        ("claude-nova-7-20261101", False),
    ]
    [unmapped] = await model_map.unmapped(first.database)
    assert (unmapped.requested, unmapped.served_by, unmapped.requests) == (
        "claude-nova-7",
        first.config.bedrock_default_model,
        1,
    )


def test_resolving_a_name_keeps_the_alias_rules_and_flags_substitution() -> None:
    mapping = {"claude-opus-4": "a", "claude-opus-4-8": "b"}
    resolve = model_map.resolve
    assert resolve("claude-opus-4-8[1m]", None, "d", mapping) == model_map.Resolution("b")
    assert resolve("claude-opus-4-20250514", None, "d", mapping) == model_map.Resolution("a")
    assert resolve("claude-opus-4-9", None, "d", mapping) == model_map.Resolution("d", substituted=True)
    assert resolve("claude-opus-4-9", "k", "d", mapping) == model_map.Resolution("k")  # the key's own model
    assert resolve(None, None, "d", mapping) == model_map.Resolution("d")


async def test_ccproxy_models_commands_list_set_delete_and_unmapped(database_url: str, open_tmp: Path) -> None:
    env = cli_env(open_tmp, database_url=database_url)

    def cli(*args: str) -> Any:
        return orjson.loads(run_cli(env, "models", *args, "--json").stdout)

    listed = await asyncio.to_thread(cli, "list")
    assert {"anthropic_name": "claude-opus-4-8", "bedrock_model_id": "us.anthropic.claude-opus-4-8"}.items() <= next(
        e for e in listed if e["anthropic_name"] == "claude-opus-4-8"
    ).items()
    made = await asyncio.to_thread(cli, "set", "claude-nova-7", "us.anthropic.claude-nova-7-v1:0")
    assert (made["anthropic_name"], made["source"]) == ("claude-nova-7", "operator")
    listed = {e["anthropic_name"]: e for e in await asyncio.to_thread(cli, "list")}
    assert listed["claude-nova-7"]["bedrock_model_id"] == "us.anthropic.claude-nova-7-v1:0"
    gone = await asyncio.to_thread(cli, "delete", "claude-nova-7")
    assert gone["was"] == "us.anthropic.claude-nova-7-v1:0"
    assert await asyncio.to_thread(cli, "unmapped") == []

    bad = await asyncio.to_thread(run_cli, env, "models", "set", "claude x", "id", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "model name" in bad.stderr
    missing = await asyncio.to_thread(run_cli, env, "models", "delete", "claude-nothing", check=False)
    assert missing.returncode == 1 and "no mapping" in missing.stderr


# --- a feature Bedrock lacks, through the gateway ---------------------------------------------------------------


async def test_a_server_tool_on_the_bedrock_path_gets_a_400_naming_it(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock_fake: tuple[FakeBedrock, str],
    http: aiohttp.ClientSession,
) -> None:
    bedrock, bedrock_url = bedrock_fake
    gw = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    key = await with_bedrock(gw, bedrock)
    fake[0].default = "usage_limit"
    body = {**BODY, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}
    status, headers, raw = await post(
        http, f"{gw.url}/ak/{key}/v1/messages", body, {"anthropic-beta": "web-search-2025-03-05"}
    )
    assert status == 400 and headers["x-ccproxy-provider"] == "bedrock"
    error = orjson.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert "server tools (web search" in error["message"] and "Amazon Bedrock" in error["message"]
    assert bedrock.requests == []
    [row] = await gw.usage_rows()
    assert (row["provider"], row["status"], row["error_class"]) == ("bedrock", 400, "invalid_request_error")
