"""The admin API's resources: each endpoint's happy path and its errors, in the API's
own error shape, against a real gateway and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from admin_client import PASSWORD, AdminClient, make_admin
from conftest import Gateway

from gateway import admins, audit, server

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
PLAN = {"x-api-key": "sk-ant-developer-own-key", "anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt's cost is the point in production; these tests hash many passwords.
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


async def login(gateway: Gateway, http: aiohttp.ClientSession, name: str = "root") -> AdminClient:
    await make_admin(gateway.database, name)
    client = AdminClient(http, gateway.url)
    assert (await client.login(name, PASSWORD))[0] == 200
    return client


@pytest.fixture
async def api(gateway: Gateway, http: aiohttp.ClientSession) -> AdminClient:
    return await login(gateway, http)


def error(body: Any) -> tuple[str, str | None]:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]["code"], body["error"]["field"]


async def relay_status(http: aiohttp.ClientSession, gateway: Gateway, key: str) -> int:
    async with http.post(f"{gateway.url}/ak/{key}/v1/messages", data=orjson.dumps(BODY), headers=PLAN) as resp:
        await resp.read()
        return resp.status


# --- users ----------------------------------------------------------------------------------


async def test_users_are_created_listed_searched_and_paged(api: AdminClient) -> None:
    status, team = await api.post("/admin/teams", {"name": "platform"})
    assert status == 201
    status, alice = await api.post(
        "/admin/users",
        {
            "name": "alice",
            "description": "dev",
            "team_id": team["id"],
            "monthly_budget_usd": "50",
            "allowed_models": ["claude-*"],
        },
    )
    assert status == 201
    assert (alice["name"], alice["team"], alice["monthly_budget_usd"], alice["status"]) == (
        "alice",
        "platform",
        "50.00",
        "active",
    )
    assert alice["alert_thresholds"] == [80, 100] and alice["active_keys"] == 0
    assert alice["created_at"].endswith("Z") or "+" in alice["created_at"]
    for name in ("bob", "carol", "alberta"):
        assert (await api.post("/admin/users", {"name": name}))[0] == 201
    status, page = await api.get("/admin/users", search="AL", limit=1)
    assert status == 200
    assert (page["total"], page["limit"], page["offset"], [u["name"] for u in page["items"]]) == (2, 1, 0, ["alberta"])
    status, page = await api.get("/admin/users", search="al", limit=1, offset=1)
    assert [u["name"] for u in page["items"]] == ["alice"] and page["total"] == 2
    status, page = await api.get("/admin/users", offset=100)
    assert (page["items"], page["total"]) == ([], 4)
    status, page = await api.get("/admin/users", team=team["id"])
    assert [u["name"] for u in page["items"]] == ["alice"]
    status, detail = await api.get(f"/admin/users/{alice['id']}")
    # The detail adds the routing strategy and the keys' quota (tests/test_admin_extras.py).
    assert detail == {**alice, "routing": None, "quota": []}


async def test_user_writes_refuse_bad_input_naming_the_field(api: AdminClient) -> None:
    await api.post("/admin/users", {"name": "alice"})
    cases: list[tuple[str, str, Any, int, str, str | None]] = [
        ("POST", "/admin/users", {"name": "ALICE"}, 409, "conflict", None),
        ("POST", "/admin/users", {"name": "  "}, 422, "validation_failed", "name"),
        ("POST", "/admin/users", {"name": "x" * 201}, 422, "validation_failed", "name"),
        (
            "POST",
            "/admin/users",
            {"name": "b", "monthly_budget_usd": "0"},
            422,
            "validation_failed",
            "monthly_budget_usd",
        ),
        (
            "POST",
            "/admin/users",
            {"name": "b", "monthly_budget_usd": "1.001"},
            422,
            "validation_failed",
            "monthly_budget_usd",
        ),
        (
            "POST",
            "/admin/users",
            {"name": "b", "monthly_budget_usd": "lots"},
            422,
            "validation_failed",
            "monthly_budget_usd",
        ),
        ("POST", "/admin/users", {"name": "b", "alert_thresholds": [0]}, 422, "validation_failed", "alert_thresholds"),
        ("POST", "/admin/users", {"name": "b", "team_id": 999}, 422, "validation_failed", "team_id"),
        ("POST", "/admin/users", {"name": "b", "colour": "red"}, 422, "validation_failed", "colour"),
        ("POST", "/admin/users", {}, 422, "validation_failed", "name"),
        ("PATCH", "/admin/users/1", {}, 422, "validation_failed", None),
        ("PATCH", "/admin/users/1", {"status": "active"}, 422, "validation_failed", "status"),
        ("PATCH", "/admin/users/999", {"description": "x"}, 404, "not_found", None),
        ("GET", "/admin/users/abc", None, 422, "validation_failed", "user_id"),
        ("GET", "/admin/users/999", None, 404, "not_found", None),
        ("GET", "/admin/users", {"limit": "0"}, 422, "validation_failed", "limit"),
        ("GET", "/admin/users", {"status": "deleted"}, 422, "validation_failed", "status"),
    ]
    for method, path, body, want_status, want_code, want_field in cases:
        if method == "GET" and isinstance(body, dict):
            status, answer = await api.get(path, **body)
        else:
            status, answer = await api.call(method, path, body)
        assert status == want_status, (method, path, body, answer)
        assert error(answer) == (want_code, want_field), (method, path, body, answer)
    status, answer = await api.call("POST", "/admin/users", raw=b"{not json")
    assert status == 400 and error(answer) == ("bad_request", None)


async def test_patch_changes_only_the_fields_given_and_null_clears(api: AdminClient) -> None:
    _, team = await api.post("/admin/teams", {"name": "platform"})
    _, user = await api.post("/admin/users", {"name": "alice", "team_id": team["id"], "monthly_budget_usd": 5})
    status, changed = await api.patch(
        f"/admin/users/{user['id']}", {"description": "lead", "alert_thresholds": [100, 50, 50]}
    )
    assert status == 200
    assert (changed["description"], changed["team_id"], changed["monthly_budget_usd"]) == ("lead", team["id"], "5.00")
    assert changed["alert_thresholds"] == [50, 100]
    _, cleared = await api.patch(
        f"/admin/users/{user['id']}", {"team_id": None, "monthly_budget_usd": None, "name": "alicia"}
    )
    assert (cleared["team"], cleared["monthly_budget_usd"], cleared["name"]) == (None, None, "alicia")


async def test_deactivating_revokes_every_key_and_cannot_be_undone(
    api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    first, second = await gateway.issue_key("alice"), await gateway.issue_key("alice")
    assert await relay_status(http, gateway, first["key"]) == 200
    status, user = await api.post(f"/admin/users/{first['user_id']}/deactivate")
    assert status == 200 and user["status"] == "inactive" and user["deactivated_at"] and user["active_keys"] == 0
    await asyncio.sleep(0.3)
    assert await relay_status(http, gateway, first["key"]) == 404
    assert await relay_status(http, gateway, second["key"]) == 404
    status, answer = await api.post(f"/admin/users/{first['user_id']}/deactivate")
    assert status == 409 and error(answer)[0] == "conflict"
    status, answer = await api.post(f"/admin/users/{first['user_id']}/access-keys", {})
    assert status == 409 and "inactive" in answer["error"]["message"]
    _, page = await api.get(f"/admin/users/{first['user_id']}/access-keys")
    assert {k["status"] for k in page["items"]} == {"revoked"}
    _, listed = await api.get("/admin/users", status="inactive")
    assert [u["name"] for u in listed["items"]] == ["alice"]


async def test_soft_delete_hides_the_user_frees_the_name_and_keeps_the_usage(
    api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    issued = await gateway.issue_key("alice")
    assert await relay_status(http, gateway, issued["key"]) == 200
    await gateway.flush_usage()
    status, _ = await api.delete(f"/admin/users/{issued['user_id']}")
    assert status == 204
    assert (await api.get(f"/admin/users/{issued['user_id']}"))[0] == 404
    assert (await api.delete(f"/admin/users/{issued['user_id']}"))[0] == 404
    assert (await api.get("/admin/users"))[1]["total"] == 0
    await asyncio.sleep(0.3)
    assert await relay_status(http, gateway, issued["key"]) == 404
    status, again = await api.post("/admin/users", {"name": "alice"})
    assert status == 201 and again["id"] != issued["user_id"]
    _, events = await api.get("/admin/usage/events", user=issued["user_id"])
    assert events["total"] == 1 and events["items"][0]["user_name"] == "alice"


async def test_the_budget_endpoint_shows_month_spend_and_sets_the_budget(api: AdminClient, gateway: Gateway) -> None:
    _, team = await api.post("/admin/teams", {"name": "platform", "monthly_budget_usd": "100"})
    _, user = await api.post("/admin/users", {"name": "alice", "team_id": team["id"]})
    status, budget = await api.get(f"/admin/users/{user['id']}/budget")
    assert status == 200
    assert (budget["monthly_budget_usd"], budget["spent_usd"], budget["remaining_usd"]) == (None, "0", None)
    assert budget["team"]["monthly_budget_usd"] == "100.00" and budget["team"]["remaining_usd"] == "100.000000"
    assert budget["resets_at"] > budget["period_start"]
    status, budget = await api.put(
        f"/admin/users/{user['id']}/budget", {"monthly_budget_usd": "25.50", "alert_thresholds": [90]}
    )
    assert status == 200 and (budget["monthly_budget_usd"], budget["alert_thresholds"]) == ("25.50", [90])
    status, answer = await api.put(f"/admin/users/{user['id']}/budget", {"monthly_budget_usd": "1000000"})
    assert status == 422 and error(answer) == ("validation_failed", "monthly_budget_usd")
    status, answer = await api.put(f"/admin/users/{user['id']}/budget", {})
    assert status == 422 and error(answer) == ("validation_failed", "monthly_budget_usd")


# --- teams -------------------------------------------------------------------------------------


async def test_teams_are_created_updated_listed_and_deleted(api: AdminClient) -> None:
    status, team = await api.post(
        "/admin/teams",
        {
            "name": "platform",
            "monthly_budget_usd": 500,
            "allowed_models": ["claude-sonnet-*"],
            "alert_thresholds": [50],
        },
    )
    assert status == 201
    assert (team["monthly_budget_usd"], team["allowed_models"], team["alert_thresholds"], team["members"]) == (
        "500.00",
        ["claude-sonnet-*"],
        [50],
        0,
    )
    assert (await api.post("/admin/teams", {"name": "PLATFORM"}))[0] == 409
    await api.post("/admin/users", {"name": "alice", "team_id": team["id"]})
    status, changed = await api.patch(f"/admin/teams/{team['id']}", {"allowed_models": None, "name": "infra"})
    assert status == 200 and (changed["allowed_models"], changed["name"], changed["members"]) == (None, "infra", 1)
    _, page = await api.get("/admin/teams", search="inf")
    assert [t["name"] for t in page["items"]] == ["infra"] and page["total"] == 1
    assert (await api.delete(f"/admin/teams/{team['id']}"))[0] == 204
    assert (await api.get(f"/admin/teams/{team['id']}"))[0] == 404
    assert (await api.delete(f"/admin/teams/{team['id']}"))[0] == 404
    _, users = await api.get("/admin/users")
    assert users["items"][0]["team"] is None
    assert (await api.patch("/admin/teams/1", {}))[0] == 422


# --- access keys -------------------------------------------------------------------------------


async def test_a_key_is_issued_once_with_its_raw_value_and_never_again(
    api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    _, user = await api.post("/admin/users", {"name": "alice"})
    status, issued = await api.post(
        f"/admin/users/{user['id']}/access-keys", {"bedrock_region": "eu-west-1", "rpm_limit": 60}
    )
    assert status == 201
    raw = issued["raw_key"]
    assert raw.startswith("ak_") and issued["prefix"] == raw[:9] and issued["rpm_limit"] == 60
    assert await relay_status(http, gateway, raw) == 200
    reads = [
        await api.get(f"/admin/access-keys/{issued['id']}"),
        await api.get(f"/admin/users/{user['id']}/access-keys"),
        await api.get("/admin/audit"),
        await api.get("/admin/usage/events"),
    ]
    for status, body in reads:
        assert status == 200
        dumped = orjson.dumps(body).decode()
        assert raw not in dumped and raw[9:] not in dumped and "raw_key" not in dumped
    status, answer = await api.post(f"/admin/users/{user['id']}/access-keys", {"bedrock_region": "Mars"})
    assert status == 422 and error(answer) == ("validation_failed", "bedrock_region")
    assert (await api.post("/admin/users/999/access-keys", {}))[0] == 404


async def test_a_key_is_updated_and_revoked(api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession) -> None:
    issued = await gateway.issue_key("alice", bedrock_region="eu-west-1")
    path = f"/admin/access-keys/{issued['id']}"
    status, key = await api.patch(
        path, {"bedrock_model": "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "rpm_limit": 10}
    )
    assert status == 200 and key["rpm_limit"] == 10 and key["bedrock_region"] == "eu-west-1"
    _, key = await api.patch(path, {"bedrock_region": None, "rpm_limit": None, "bedrock_default_credentials": True})
    assert (key["bedrock_region"], key["rpm_limit"], key["bedrock_default_credentials"]) == (None, None, True)
    assert (await api.patch(path, {"rpm_limit": 0}))[0] == 422
    assert (await api.patch(path, {}))[0] == 422
    status, key = await api.delete(path)
    assert status == 200 and key["status"] == "revoked" and key["revoked_at"]
    await asyncio.sleep(0.3)
    assert await relay_status(http, gateway, issued["key"]) == 404
    status, answer = await api.delete(path)
    assert status == 409 and error(answer)[0] == "conflict"
    assert (await api.patch(path, {"rpm_limit": 5}))[0] == 409
    assert (await api.get("/admin/access-keys/999"))[0] == 404


async def test_the_bedrock_key_is_only_ever_shown_as_registered_or_not(api: AdminClient, gateway: Gateway) -> None:
    issued = await gateway.issue_key("alice")
    path = f"/admin/access-keys/{issued['id']}/bedrock-key"
    assert await api.get(path) == (200, {"access_key_id": issued["id"], "registered": False})
    secret = "ABSK-very-secret-bedrock-key-value"
    assert await api.put(path, {"api_key": secret}) == (200, {"access_key_id": issued["id"], "registered": True})
    assert await api.get(path) == (200, {"access_key_id": issued["id"], "registered": True})
    _, key = await api.get(f"/admin/access-keys/{issued['id']}")
    assert key["bedrock_key_registered"] is True
    _, log = await api.get("/admin/audit", action="key.bedrock_key_set")
    assert log["total"] == 1 and secret not in orjson.dumps(log).decode()
    assert (await api.put(path, {"api_key": "  "}))[1]["error"]["field"] == "api_key"
    assert await api.delete(path) == (200, {"access_key_id": issued["id"], "registered": False})
    assert (await api.get("/admin/access-keys/999/bedrock-key"))[0] == 404


# --- pricing, circuits, audit, misc ---------------------------------------------------------------


async def test_prices_are_listed_upserted_and_reloaded(api: AdminClient, gateway: Gateway) -> None:
    status, page = await api.get("/admin/pricing", limit=500)
    assert status == 200 and page["total"] == len(page["items"]) > 0
    row = {
        "model": "claude-sonnet-4-5",
        "input": "3.5",
        "output": 15,
        "cache_write_5m": "3.75",
        "cache_write_1h": "6",
        "cache_read": "0.30",
        "effective_date": "2026-01-01",
    }
    status, stored = await api.put("/admin/pricing", row)
    assert status == 200 and (stored["input"], stored["region"], stored["output"]) == ("3.5", "*", "15")
    status, reloaded = await api.post("/admin/pricing/reload")
    assert status == 200 and reloaded["rows"] == len(gateway.app[server.PRICES].book)
    _, page = await api.get("/admin/pricing", limit=500)
    assert any(Decimal(p["input"]) == Decimal("3.5") and p["effective_date"] == "2026-01-01" for p in page["items"])
    for bad, field in (
        ({**row, "input": "-1"}, "input"),
        ({**row, "region": "Mars"}, "region"),
        ({**row, "cache_read": "0.0000001"}, "cache_read"),
    ):
        status, answer = await api.put("/admin/pricing", bad)
        assert status == 422 and error(answer) == ("validation_failed", field), answer


async def test_circuits_are_listed_and_reset(api: AdminClient, gateway: Gateway) -> None:
    issued = await gateway.issue_key("alice")
    assert await api.get("/admin/circuits") == (200, {"items": [], "total": 0, "limit": 50, "offset": 0})
    assert (await api.post(f"/admin/circuits/{issued['id']}/reset"))[0] == 409
    async with gateway.database.acquire() as conn:
        await conn.execute(
            "INSERT INTO circuit_states (access_key_id, state, failures, opened_at) VALUES ($1, 'open', 3, now())",
            issued["id"],
        )
    _, page = await api.get("/admin/circuits")
    assert [(c["access_key_id"], c["state"], c["prefix"]) for c in page["items"]] == [
        (issued["id"], "open", issued["key"][:9])
    ]
    assert await api.post(f"/admin/circuits/{issued['id']}/reset") == (
        200,
        {"access_key_id": issued["id"], "state": "closed"},
    )
    assert (await api.get("/admin/circuits"))[1]["total"] == 0
    assert (await api.post("/admin/circuits/999/reset"))[0] == 404


async def test_every_admin_write_is_audited_with_actor_target_changes_and_address(api: AdminClient) -> None:
    _, user = await api.post("/admin/users", {"name": "alice", "monthly_budget_usd": "10"})
    await api.patch(f"/admin/users/{user['id']}", {"description": "lead"})
    _, key = await api.post(f"/admin/users/{user['id']}/access-keys", {})
    await api.delete(f"/admin/access-keys/{key['id']}")
    await api.post(f"/admin/users/{user['id']}/deactivate")
    status, page = await api.get("/admin/audit", actor="root")
    assert status == 200
    actions = [e["action"] for e in page["items"]]
    assert actions == ["user.deactivate", "key.revoke", "key.issue", "user.update", "user.create", "admin.login"]
    create = page["items"][-2]
    assert (create["actor"], create["actor_kind"], create["target_type"], create["target_id"]) == (
        "root",
        "admin",
        "user",
        str(user["id"]),
    )
    assert create["changes"]["monthly_budget_usd"] == "10.00" and create["client_address"] == "127.0.0.1"
    assert page["items"][3]["changes"] == {"description": "lead"}
    _, filtered = await api.get("/admin/audit", target_type="access_key", target_id=str(key["id"]))
    assert [e["action"] for e in filtered["items"]] == ["key.revoke", "key.issue"]
    _, later = await api.get("/admin/audit", start="2999-01-01")
    assert later["total"] == 0
    assert (await api.get("/admin/audit", start="yesterday"))[1]["error"]["field"] == "start"


async def test_unknown_paths_methods_and_oversized_bodies_get_the_admin_error_shape(api: AdminClient) -> None:
    status, body = await api.get("/admin/nothing-here")
    assert status == 404 and error(body) == ("not_found", None)
    status, body = await api.call("PUT", "/admin/users")
    assert status == 405 and error(body) == ("method_not_allowed", None)
    status, body = await api.call("POST", "/admin/users", raw=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert status == 413 and error(body) == ("payload_too_large", None)


async def test_the_openapi_document_is_served(api: AdminClient) -> None:
    status, text = await api.call("GET", "/admin/openapi.yaml", headers={"authorization": ""})
    assert status == 200 and text.startswith("openapi: 3.")


# --- usage ---------------------------------------------------------------------------------------


async def _traffic(gateway: Gateway, http: aiohttp.ClientSession) -> dict[str, Any]:
    alice, bob = await gateway.issue_key("alice"), await gateway.issue_key("bob")
    for key in (alice, alice, bob):
        assert await relay_status(http, gateway, key["key"]) == 200
    await gateway.flush_usage()
    return {"alice": alice, "bob": bob}


async def test_usage_buckets_totals_and_models_add_up_to_the_events(
    api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    keys = await _traffic(gateway, http)
    status, report = await api.get("/admin/usage", period="24h")
    assert status == 200
    assert report["granularity"] == "hour" and len(report["buckets"]) in (24, 25)
    assert report["totals"]["requests"] == 3 and report["totals"]["plan_requests"] == 3
    assert report["totals"]["bedrock_requests"] == 0 and Decimal(report["totals"]["cost_usd"]) == 0
    assert sum(b["requests"] for b in report["buckets"]) == 3
    assert sum(b["input_tokens"] for b in report["buckets"]) == report["totals"]["input_tokens"] > 0
    assert [m["model"] for m in report["by_model"]] == ["claude-sonnet-4-5"]
    assert report["by_model"][0]["requests"] == 3
    _, alice_only = await api.get("/admin/usage", period="1h", user=keys["alice"]["user_id"], granularity="minute")
    assert alice_only["granularity"] == "minute" and alice_only["totals"]["requests"] == 2
    _, by_key = await api.get("/admin/usage", key=keys["bob"]["id"])
    assert by_key["totals"]["requests"] == 1
    _, bedrock = await api.get("/admin/usage", provider="bedrock")
    assert bedrock["totals"]["requests"] == 0
    for params, field in (
        ({"period": "2y"}, "period"),
        ({"period": "24h", "start": "2026-01-01"}, "period"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ({"granularity": "minute", "start": "2020-01-01", "end": "2020-01-02"}, "granularity"),
        ({"granularity": "minute", "start": "2026-01-01", "end": "2026-03-01"}, "granularity"),
        ({"provider": "openai"}, "provider"),
        ({"user": "alice"}, "user"),
    ):
        status, answer = await api.get("/admin/usage", **params)
        assert status == 422 and error(answer) == ("validation_failed", field), (params, answer)


async def test_top_users_events_and_export_share_their_filters(
    api: AdminClient, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    keys = await _traffic(gateway, http)
    status, top = await api.get("/admin/usage/top-users", period="24h", order_by="requests")
    assert status == 200
    assert [(u["user_name"], u["requests"]) for u in top["items"]] == [("alice", 2), ("bob", 1)]
    assert abs(top["items"][0]["share"] - 2 / 3) < 1e-9 and top["total"] == 2
    status, events = await api.get("/admin/usage/events", limit=2)
    assert status == 200 and events["total"] == 3 and len(events["items"]) == 2
    assert events["items"][0]["created_at"] >= events["items"][1]["created_at"]
    _, alice_events = await api.get("/admin/usage/events", user=keys["alice"]["user_id"], status=200, provider="plan")
    assert alice_events["total"] == 2
    assert (await api.get("/admin/usage/events", status=404))[1]["total"] == 0
    status, text = await api.get("/admin/usage/export.csv", user=keys["alice"]["user_id"])
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["request_id"] for r in rows] == [e["request_id"] for e in alice_events["items"]]
    assert rows[0]["user_name"] == "alice" and Decimal(rows[0]["cost_usd"]) == 0
    assert (await api.get("/admin/usage/export.csv", status="abc"))[0] == 422
    assert (await api.get("/admin/usage/top-users", order_by="vibes"))[0] == 422


# --- rotation and deactivation across gateways ---------------------------------------------------


async def test_rotation_inherits_the_key_and_the_old_one_dies_after_the_grace_on_every_gateway(
    gateway_factory: Any, fake: Any, bedrock: Any, http: aiohttp.ClientSession
) -> None:
    first = await gateway_factory(fake[1], key_rotation_grace_seconds="1.5", bedrock_endpoint_url=bedrock.url)
    second = await gateway_factory(fake[1], key_rotation_grace_seconds="1.5", bedrock_endpoint_url=bedrock.url)
    api = await login(first, http)
    old = await first.issue_key("alice", bedrock_region="eu-west-1", bedrock_model="m-1", rpm_limit=100)
    await api.put(f"/admin/access-keys/{old['id']}/bedrock-key", {"api_key": bedrock.api_key})
    assert await relay_status(http, second, old["key"]) == 200  # cached on the second gateway
    status, new = await api.post(f"/admin/access-keys/{old['id']}/rotate")
    assert status == 201
    assert new["replaces"] == old["id"] and new["raw_key"] != old["key"]
    assert (new["bedrock_region"], new["bedrock_model"], new["rpm_limit"], new["bedrock_key_registered"]) == (
        "eu-west-1",
        "m-1",
        100,
        True,
    )
    _, old_now = await api.get(f"/admin/access-keys/{old['id']}")
    assert old_now["status"] == "active" and old_now["replaced_by"] == new["id"] and old_now["expires_at"]
    assert await relay_status(http, second, old["key"]) == 200  # inside the grace period
    assert await relay_status(http, second, new["raw_key"]) == 200
    assert (await api.post(f"/admin/access-keys/{old['id']}/rotate"))[0] == 409  # already rotated
    # The re-sealed Bedrock key opens on the new key: a fallback through it works.
    fake[0].queue("usage_limit")
    async with http.post(
        f"{second.url}/ak/{new['raw_key']}/v1/messages", data=orjson.dumps(BODY), headers=PLAN
    ) as resp:
        await resp.read()
        assert (resp.status, resp.headers.get("x-ccproxy-provider")) == (200, "bedrock")
    deadline = time.monotonic() + 6
    while await relay_status(http, second, old["key"]) != 404:
        assert time.monotonic() < deadline, "the rotated key still works after its grace period"
        await asyncio.sleep(0.2)
    assert await relay_status(http, first, old["key"]) == 404
    assert await relay_status(http, second, new["raw_key"]) == 200
    _, old_now = await api.get(f"/admin/access-keys/{old['id']}")
    assert old_now["status"] == "revoked"
    status, answer = await api.post(f"/admin/access-keys/{old['id']}/rotate")
    assert status == 409 and "revoked" in answer["error"]["message"]
    revoked_by = (await audit.list_entries(first.database, action="key.revoke")).items
    assert [e.actor for e in revoked_by] == ["system"]


async def test_deactivation_reaches_a_second_gateway_within_one_second(
    gateway_factory: Any, fake: Any, http: aiohttp.ClientSession
) -> None:
    first = await gateway_factory(fake[1])
    second = await gateway_factory(fake[1])
    api = await login(first, http)
    issued = await first.issue_key("alice")
    assert await relay_status(http, second, issued["key"]) == 200  # now cached there
    started = time.monotonic()
    assert (await api.post(f"/admin/users/{issued['user_id']}/deactivate"))[0] == 200
    while await relay_status(http, second, issued["key"]) != 404:
        assert time.monotonic() - started < 1.0, "deactivation did not reach the second gateway within 1 s"
        await asyncio.sleep(0.02)
