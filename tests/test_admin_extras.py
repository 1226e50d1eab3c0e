"""The admin API's faces of issues 14 and 15: quota states, routing strategy per team, user
and key, the model map and usage by Claude Code session or agent. Real gateways, the
fake plan and fake Bedrock, and the CLI on the same data for the same answer."""

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
from admin_client import PASSWORD, AdminClient, make_admin
from conftest import Gateway, cli_env, run_cli, start_site

from bench.fake_anthropic import FakeAnthropic, Unified
from bench.fake_bedrock import FakeBedrock
from gateway import admins, audit, keys, server

PLAN = {"x-api-key": "sk-ant-extras-test-credential", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt's cost is the point in production; these tests hash several passwords.
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


async def login(gateway: Gateway, http: aiohttp.ClientSession, name: str, role: str = "admin") -> AdminClient:
    await make_admin(gateway.database, name, role)
    client = AdminClient(http, gateway.url)
    assert (await client.login(name, PASSWORD))[0] == 200
    return client


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AdminClient:
    return await login(gateway, http, "root")


@pytest.fixture
async def viewer(gateway: Gateway, http: aiohttp.ClientSession) -> AdminClient:
    return await login(gateway, http, "watcher", "viewer")


@pytest.fixture
async def bedrock_fake() -> AsyncIterator[tuple[FakeBedrock, str]]:
    fake = FakeBedrock(api_key="ABSK" + secrets.token_urlsafe(30))
    runner, url = await start_site(fake.app())
    yield fake, url
    await runner.cleanup()


def error(body: Any) -> tuple[str, str | None]:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]["code"], body["error"]["field"]


def same_times(value: Any) -> Any:
    """The CLI prints times as orjson does (`+00:00`), the API as msgspec does (`Z`): the
    same instants, compared as such."""
    if isinstance(value, dict):
        return {k: same_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [same_times(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and "T" in value:
        return dt.datetime.fromisoformat(value)
    return value


def cli_json(gateway: Gateway, tmp_path: Path, *args: str) -> Any:
    env = cli_env(tmp_path, database_url=gateway.config.database_url)
    return orjson.loads(run_cli(env, *args, "--json").stdout)


async def post(http: aiohttp.ClientSession, gw: Gateway, key: str, body: Any, headers: Any = None) -> int:
    url = f"{gw.url}/ak/{key}/v1/messages"
    async with http.post(url, data=orjson.dumps(body), headers={**PLAN, **(headers or {})}) as resp:
        await resp.read()
        return resp.status


# --- quota (issue 14) ---------------------------------------------------------------------------------


async def test_quota_lists_each_keys_windows_and_routing_and_the_details_carry_them(
    gateway: Gateway, api: AdminClient, tmp_path: Path
) -> None:
    alice = await gateway.issue_key("alice")
    bob = await gateway.issue_key("bob")
    quiet = await gateway.issue_key("alice")  # the plan never reported a quota for it
    quotas = gateway.app[server.QUOTAS]
    now = time.time()
    warned = Unified("allowed_warning", 600, {"5h": ("allowed_warning", 0.82, 600), "7d": ("allowed", 0.4, 86400)})
    quotas.observe(alice["id"], [(k.lower(), v) for k, v in warned.headers(now).items()], 200, now)
    quotas.observe(bob["id"], [(k.lower(), v) for k, v in Unified.rejected(3600).headers(now).items()], 429, now)
    await quotas.drain()

    status, page = await api.get("/admin/quota")
    assert status == 200 and page["total"] == 2 and (page["limit"], page["offset"]) == (50, 0)
    by_key = {v["access_key_id"]: v for v in page["items"]}
    assert by_key.keys() == {alice["id"], bob["id"]}
    a = by_key[alice["id"]]
    assert (a["user"], a["unified_status"], a["routed_to_bedrock"], a["routed_until"]) == (
        "alice",
        "allowed_warning",
        False,
        None,
    )
    assert a["windows"]["5h"]["utilization"] == 0.82 and a["windows"]["7d"]["status"] == "allowed"
    assert a["windows"]["5h"]["reset"].endswith("Z") and a["seen_at"].endswith("Z")
    b = by_key[bob["id"]]
    assert b["routed_to_bedrock"] and b["routed_until"] is not None and b["windows"]["5h"]["status"] == "rejected"

    status, only_bob = await api.get("/admin/quota", user=bob["user_id"])
    assert status == 200 and [v["access_key_id"] for v in only_bob["items"]] == [bob["id"]]
    status, paged = await api.get("/admin/quota", limit=1, offset=1)
    assert (len(paged["items"]), paged["total"]) == (1, 2)

    status, key = await api.get(f"/admin/access-keys/{alice['id']}")
    assert status == 200 and key["quota"] == a and key["routing"] is None
    status, key = await api.get(f"/admin/access-keys/{quiet['id']}")
    assert status == 200 and key["quota"] is None
    status, user = await api.get(f"/admin/users/{alice['user_id']}")
    assert status == 200 and user["quota"] == [a] and user["routing"] is None

    # The CLI reads the same service: the same views.
    cli = await asyncio.to_thread(cli_json, gateway, tmp_path, "keys", "quota")
    assert same_times(cli) == same_times(page["items"])

    status, body = await api.get("/admin/quota", user=999999)
    assert status == 404 and error(body) == ("not_found", None)
    status, body = await api.get("/admin/quota", user="alice")
    assert status == 422 and error(body) == ("validation_failed", "user")
    status, body = await api.get("/admin/quota", limit=0)
    assert status == 422 and error(body) == ("validation_failed", "limit")


# --- routing strategy (issue 14) ----------------------------------------------------------------------


async def test_routing_is_set_by_patch_on_team_user_and_key_shown_on_details_and_audited(
    gateway: Gateway, api: AdminClient, viewer: AdminClient
) -> None:
    status, team = await api.post("/admin/teams", {"name": "platform"})
    status, user = await api.post("/admin/users", {"name": "alice", "team_id": team["id"]})
    status, issued = await api.post(f"/admin/users/{user['id']}/access-keys", {})
    assert status == 201
    key_id = issued["id"]

    status, body = await api.patch(f"/admin/teams/{team['id']}", {"routing": "plan_first"})
    assert status == 200 and body["routing"] == "plan_first" and body["name"] == "platform"
    status, body = await api.get(f"/admin/teams/{team['id']}")
    assert body["routing"] == "plan_first"

    # bedrock_only where a key would have nowhere to go: refused, naming the field and the key.
    for path in (f"/admin/teams/{team['id']}", f"/admin/users/{user['id']}", f"/admin/access-keys/{key_id}"):
        status, body = await api.patch(path, {"routing": "bedrock_only"})
        assert status == 422 and error(body) == ("validation_failed", "routing"), path
        assert f"access key {key_id}" in body["error"]["message"] and "no Bedrock" in body["error"]["message"]
    status, body = await api.get(f"/admin/access-keys/{key_id}")
    assert body["routing"] is None  # nothing was changed by the refusals

    # One PATCH may allow Bedrock and route to it: the fields first, then the routing.
    status, body = await api.patch(
        f"/admin/access-keys/{key_id}", {"bedrock_default_credentials": True, "routing": "bedrock_only"}
    )
    assert status == 200 and (body["routing"], body["bedrock_default_credentials"]) == ("bedrock_only", True)
    status, body = await api.patch(f"/admin/users/{user['id']}", {"routing": "bedrock_only", "description": "ops"})
    assert status == 200 and (body["routing"], body["description"]) == ("bedrock_only", "ops")
    status, body = await api.get(f"/admin/users/{user['id']}")
    assert body["routing"] == "bedrock_only"
    status, body = await api.patch(f"/admin/users/{user['id']}", {"routing": None})
    assert status == 200 and body["routing"] is None
    context = await keys.get(gateway.database, key_id)
    assert context.bedrock_default_credentials

    status, page = await api.get("/admin/audit", action="key.routing")
    assert [(e["target_id"], e["changes"], e["actor"]) for e in page["items"]] == [
        (str(key_id), {"routing": "bedrock_only"}, "root")
    ]
    status, page = await api.get("/admin/audit", action="user.routing")
    assert [e["changes"]["routing"] for e in page["items"]] == [None, "bedrock_only"]

    status, body = await api.patch(f"/admin/access-keys/{key_id}", {"routing": "sometimes"})
    assert status == 422 and error(body) == ("validation_failed", "routing")
    status, body = await api.patch(f"/admin/teams/{team['id']}", {"routing": 3})
    assert status == 422 and error(body)[1] == "routing"
    status, body = await api.patch("/admin/users/999999", {"routing": "plan_first"})
    assert status == 404 and error(body)[0] == "not_found"
    status, _ = await api.delete(f"/admin/access-keys/{key_id}")
    assert status == 200
    status, body = await api.patch(f"/admin/access-keys/{key_id}", {"routing": "plan_first"})
    assert status == 409 and error(body)[0] == "conflict" and "revoked" in body["error"]["message"]
    for path in (f"/admin/teams/{team['id']}", f"/admin/users/{user['id']}", f"/admin/access-keys/{key_id}"):
        status, body = await viewer.patch(path, {"routing": "plan_first"})
        assert status == 403 and error(body)[0] == "forbidden"
        status, body = await viewer.get(path)
        assert status == 200 and "routing" in body


# --- the model map (issue 15) --------------------------------------------------------------------------


async def test_models_are_listed_set_and_deleted_and_the_cli_lists_the_same(
    gateway: Gateway, api: AdminClient, viewer: AdminClient, tmp_path: Path
) -> None:
    status, page = await api.get("/admin/models", limit=500)
    assert status == 200 and page["total"] == len(page["items"]) > 3
    defaults = {e["anthropic_name"]: e for e in page["items"]}
    assert defaults["claude-sonnet-4-5"]["source"] == "default" and defaults["claude-sonnet-4-5"]["updated_at"] is None

    status, entry = await api.put(
        "/admin/models/claude-nova-7", {"bedrock_model_id": "us.anthropic.claude-nova-7-v1:0"}
    )
    assert status == 200 and (entry["anthropic_name"], entry["source"]) == ("claude-nova-7", "operator")
    assert entry["updated_at"].endswith("Z")
    status, page = await api.get("/admin/models", limit=500)
    listed = {e["anthropic_name"]: e for e in page["items"]}
    assert listed["claude-nova-7"]["bedrock_model_id"] == "us.anthropic.claude-nova-7-v1:0"
    assert page["total"] == len(defaults) + 1
    cli = await asyncio.to_thread(cli_json, gateway, tmp_path, "models", "list")
    assert same_times(cli) == same_times(page["items"])

    status, removed = await api.delete("/admin/models/claude-sonnet-4-5")  # a shipped default: hidden
    assert status == 200 and removed["source"] == "default"
    status, removed = await api.delete("/admin/models/claude-nova-7")
    assert status == 200 and removed["bedrock_model_id"] == "us.anthropic.claude-nova-7-v1:0"
    status, page = await api.get("/admin/models", limit=500)
    names = {e["anthropic_name"] for e in page["items"]}
    assert "claude-nova-7" not in names and "claude-sonnet-4-5" not in names
    status, body = await api.delete("/admin/models/claude-nova-7")
    assert status == 404 and error(body)[0] == "not_found"
    status, page = await api.get("/admin/audit", target_type="model")
    assert [(e["action"], e["target_id"]) for e in page["items"]] == [
        ("model.delete", "claude-nova-7"),
        ("model.delete", "claude-sonnet-4-5"),
        ("model.set", "claude-nova-7"),
    ]

    status, body = await api.put("/admin/models/claude%20x", {"bedrock_model_id": "id"})
    assert status == 422 and error(body)[0] == "validation_failed" and "model name" in body["error"]["message"]
    status, body = await api.put("/admin/models/claude-x", {"bedrock_model_id": "has space"})
    assert status == 422 and error(body)[0] == "validation_failed"
    status, body = await api.put("/admin/models/claude-x", {"model": "id"})
    assert status == 422 and error(body)[0] == "validation_failed"
    status, body = await api.call("PUT", "/admin/models/claude-x", raw=b"{not json")
    assert status == 400 and error(body)[0] == "bad_request"
    status, body = await viewer.put("/admin/models/claude-x", {"bedrock_model_id": "id"})
    assert status == 403 and error(body)[0] == "forbidden"
    status, body = await viewer.delete("/admin/models/claude-opus-4-8")
    assert status == 403 and error(body)[0] == "forbidden"
    status, page = await viewer.get("/admin/models")
    assert status == 200 and "claude-x" not in {e["anthropic_name"] for e in page["items"]}


async def test_unmapped_models_show_what_bedrock_served_with_the_default(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock_fake: tuple[FakeBedrock, str],
    http: aiohttp.ClientSession,
) -> None:
    bedrock, bedrock_url = bedrock_fake
    gw: Gateway = await gateway_factory(fake[1], bedrock_endpoint_url=bedrock_url)
    api = await login(gw, http, "root")
    status, page = await api.get("/admin/models/unmapped")
    assert status == 200 and page == {"items": [], "total": 0, "limit": 50, "offset": 0}

    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    fake[0].default = "usage_limit"  # the plan refuses: Bedrock serves, with the default model
    assert await post(http, gw, issued["key"], {**BODY, "model": "claude-nova-7"}) == 200
    await gw.flush_usage()
    status, page = await api.get("/admin/models/unmapped")
    assert status == 200 and page["total"] == 1
    [row] = page["items"]
    assert (row["requested"], row["served_by"], row["requests"]) == (
        "claude-nova-7",
        gw.config.bedrock_default_model,
        1,
    )
    status, page = await api.get("/admin/models/unmapped", since="2099-01-01")
    assert status == 200 and page["total"] == 0
    status, body = await api.get("/admin/models/unmapped", since="yesterday-ish")
    assert status == 422 and error(body) == ("validation_failed", "since")


# --- attribution (issue 15) -----------------------------------------------------------------------------


async def test_usage_summary_by_session_and_agent_and_a_users_recent_sessions(
    gateway: Gateway, api: AdminClient, http: aiohttp.ClientSession
) -> None:
    alice = await gateway.issue_key("alice")
    bob = await gateway.issue_key("bob")
    assert await post(http, gateway, alice["key"], BODY, {"x-claude-code-session-id": "sess-A"}) == 200
    agent = {
        "x-claude-code-session-id": "sess-A",
        "x-claude-code-agent-id": "agent-1",
        "x-claude-code-parent-agent-id": "root",
    }
    assert await post(http, gateway, alice["key"], BODY, agent) == 200
    assert await post(http, gateway, alice["key"], BODY, {"x-claude-code-session-id": "sess-B"}) == 200
    assert await post(http, gateway, bob["key"], BODY, {"x-claude-code-session-id": "sess-C"}) == 200
    await gateway.flush_usage()

    status, page = await api.get("/admin/usage/summary", by="session", period="24h")
    assert status == 200 and page["total"] == 3
    groups = {g["group_key"]: g for g in page["items"]}
    assert (groups["sess-A"]["requests"], groups["sess-A"]["user"]) == (2, "alice")
    assert groups["sess-A"]["input_tokens"] > 0 and groups["sess-C"]["user"] == "bob"
    status, page = await api.get("/admin/usage/summary", by="agent", period="24h", user=alice["user_id"])
    agents = {g["group_key"]: g for g in page["items"]}
    assert (agents["agent-1"]["requests"], agents["agent-1"]["parent_agent_id"]) == (1, "root")
    assert agents[""]["requests"] == 2  # the main conversation
    status, page = await api.get("/admin/usage/summary", by="session", period="24h", limit=1, offset=1)
    assert (len(page["items"]), page["total"], page["limit"], page["offset"]) == (1, 3, 1, 1)
    status, page = await api.get("/admin/usage/summary", by="session", start="2020-01-01", end="2020-02-01")
    assert status == 200 and page["total"] == 0

    status, page = await api.get(f"/admin/users/{alice['user_id']}/sessions")
    assert status == 200 and [g["group_key"] for g in page["items"]] == ["sess-B", "sess-A"]
    assert page["items"][1]["requests"] == 2 and isinstance(page["items"][1]["output_tokens"], int)
    assert page["limit"] == 20 and page["total"] == 2
    status, page = await api.get(f"/admin/users/{alice['user_id']}/sessions", limit=1)
    assert [g["group_key"] for g in page["items"]] == ["sess-B"] and page["total"] == 2

    for params, field in (
        ({}, "by"),
        ({"by": "team"}, "by"),
        ({"by": "session", "period": "2w"}, "period"),
        ({"by": "session", "start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ({"by": "session", "user": "alice"}, "user"),
    ):
        status, body = await api.get("/admin/usage/summary", **params)
        assert status == 422 and error(body) == ("validation_failed", field), params
    status, body = await api.get("/admin/usage/summary", by="session", user=999999)
    assert status == 404 and error(body)[0] == "not_found"
    status, body = await api.get("/admin/users/999999/sessions")
    assert status == 404 and error(body)[0] == "not_found"
    status, body = await api.get(f"/admin/users/{alice['user_id']}/sessions", days=0)
    assert status == 422 and error(body) == ("validation_failed", "days")
