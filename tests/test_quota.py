"""Quota-aware routing (SPEC §3, issue 14): the unified rate-limit headers as the fake plan
speaks them, their generic parsing (and its cost), the per-key state shared by every
instance through PostgreSQL, and `ccproxy keys quota`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import Gateway, cli_env, run_cli, update_user

from bench.fake_anthropic import FakeAnthropic, Unified
from gateway import audit, quota, server

PREFIX = "anthropic-ratelimit-unified-"
PLAN_HEADERS = {"x-api-key": "sk-ant-plan-credential-quota-test", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def plan_headers(now: float, **windows: tuple[str, float, int]) -> list[tuple[str, str]]:
    """A real plan response's header list (lower-case names, in order), unified ones included."""
    out = [
        ("content-type", "application/json"),
        ("request-id", "req_011CVabc"),
        ("anthropic-organization-id", "0a1b2c3d-0000-0000-0000-000000000000"),
        ("anthropic-ratelimit-unified-status", "allowed_warning"),
        ("anthropic-ratelimit-unified-reset", str(int(now) + 3600)),
        ("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
        ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
    ]
    for name, (status, utilization, reset) in windows.items():
        out += [
            (f"{PREFIX}{name}-status", status),
            (f"{PREFIX}{name}-utilization", str(utilization)),
            (f"{PREFIX}{name}-reset", str(reset)),
        ]
    out += [("cf-ray", "8f0000000000-LHR"), ("server", "cloudflare"), ("via", "1.1 google")]
    return out


# --- parsing ------------------------------------------------------------------------------------


def test_every_unified_window_is_read_generically_including_a_per_model_weekly_one() -> None:
    now = 1_764_600_000.0
    headers = plan_headers(
        now,
        **{"5h": ("allowed_warning", 0.82, 1_764_610_000), "7d": ("allowed", 0.4, 1_765_000_000)},
        **{"7d_opus": ("allowed", 0.91, 1_765_100_000)},
    )
    reading = quota.parse(headers)
    assert reading is not None
    assert (reading.status, reading.reset) == ("allowed_warning", int(now) + 3600)
    assert reading.windows == {
        "5h": ["allowed_warning", 0.82, 1_764_610_000],
        "7d": ["allowed", 0.4, 1_765_000_000],
        "7d_opus": ["allowed", 0.91, 1_765_100_000],
    }  # -fallback-percentage and -representative-claim are not window triples


def test_a_response_without_unified_headers_has_no_reading() -> None:
    assert quota.parse([("content-type", "application/json"), ("anthropic-ratelimit-requests-limit", "50")]) is None


def test_unreadable_values_are_none_not_an_exception() -> None:
    reading = quota.parse([(f"{PREFIX}5h-utilization", "lots"), (f"{PREFIX}5h-reset", "soon"), (f"{PREFIX}reset", "")])
    assert reading is not None and reading.windows == {"5h": [None, None, None]} and reading.reset is None


@pytest.mark.parametrize(
    ("overall", "windows", "expected"),
    [
        (2000, {"5h": ["rejected", 1.0, 1500], "7d": ["allowed", 0.3, 9000]}, 2000),  # the binding reset
        (None, {"5h": ["rejected", 1.0, 1500], "7d": ["rejected", 1.0, 9000]}, 9000),  # latest rejected
        (None, {"5h": [None, None, 1500], "7d": [None, None, 9000]}, 1500),  # resets, no statuses
        (None, {"5h": ["rejected", 1.0, 500]}, None),  # a reset in the past names no future time
        (None, {}, None),
    ],
)
def test_the_reset_a_rejection_routes_until(overall: int | None, windows: dict[str, Any], expected: int | None) -> None:
    reading = quota.Reading()
    reading.reset = overall
    reading.windows = windows
    assert reading.rejected_reset(1000.0) == expected


def test_the_latest_answer_with_unified_headers_is_the_reading_and_one_without_keeps_it() -> None:
    quotas = quota.Quotas(None, enabled=True, flush_seconds=60)  # type: ignore[arg-type]  # memory only
    now = time.time()
    quotas.observe(7, plan_headers(now, **{"5h": ("allowed", 0.25, int(now) + 3600)}), 200, now)
    quotas.observe(7, plan_headers(now, **{"5h": ("allowed", 0.5, int(now) + 3600)}), 200, now)
    assert quotas.max_utilization("5h") == 0.5
    quotas.observe(7, [("content-type", "application/json")], 200, now)
    assert quotas.max_utilization("5h") == 0.5
    quotas.observe(7, plan_headers(now, **{"5h": ("allowed", 0.75, int(now) + 3600)}), 200, now)
    assert quotas.max_utilization("5h") == 0.75


# --- the fake plan speaks them --------------------------------------------------------------------


async def test_the_fake_plan_speaks_the_unified_headers_exactly(
    fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, url = fake
    upstream.unified = Unified(
        "allowed_warning", 600, {"5h": ("allowed_warning", 0.8, 600), "7d": ("allowed", 0.25, 86400)}
    )
    before = int(time.time())
    async with http.post(f"{url}/v1/messages", data=orjson.dumps(BODY)) as resp:
        assert resp.status == 200
        got = {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith(PREFIX)}
    assert got.keys() == {
        PREFIX + "status",
        PREFIX + "reset",
        *(f"{PREFIX}{w}-{f}" for w in ("5h", "7d") for f in ("status", "utilization", "reset")),
    }
    assert (got[PREFIX + "status"], got[PREFIX + "5h-utilization"], got[PREFIX + "7d-status"]) == (
        "allowed_warning",
        "0.8",
        "allowed",
    )
    assert before + 599 <= int(got[PREFIX + "reset"]) <= before + 601

    upstream.queue("rejected:3")
    async with http.post(f"{url}/v1/messages", data=orjson.dumps(BODY)) as resp:
        assert resp.status == 429
        body = await resp.json()
        assert body["error"]["type"] == "rate_limit_error" and "usage limit" in body["error"]["message"]
        assert resp.headers[PREFIX + "status"] == "rejected"
        assert resp.headers[PREFIX + "5h-status"] == "rejected"
        assert before + 2 <= int(resp.headers[PREFIX + "reset"]) <= before + 4


# --- shared state ---------------------------------------------------------------------------------


async def wait_for(check: Any, within: float = 2.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_rejection_routes_the_key_on_every_instance_and_a_served_request_clears_it(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], tmp_path: Path
) -> None:
    first: Gateway = await gateway_factory(fake[1])
    second: Gateway = await gateway_factory(fake[1], data_dir=str(tmp_path / "second"))
    key_id = (await first.issue_key("dev"))["id"]
    a, b = first.app[server.QUOTAS], second.app[server.QUOTAS]
    now = time.time()
    rejected = [(k.lower(), v) for k, v in Unified.rejected(30).headers(now).items()]
    assert a.observe(key_id, rejected, 429, now) == float(int(now + 30))
    assert a.routed_until(key_id, now) == float(int(now + 30))
    waited = await wait_for(lambda: b.routed_until(key_id, time.time()) > 0)
    print(f"second instance routed after {waited * 1000:.0f} ms")
    # The same rejection seen again changes nothing, so nothing is written again.
    a.observe(key_id, rejected, 429, now)
    await asyncio.sleep(0.1)
    row = await first.database.fetchrow("get-quota-routing", key_id)
    assert row is not None and row["version"] == 1

    # After the reset the plan serves again: routing clears everywhere.
    later = now + 31
    assert a.routed_until(key_id, later) == 0.0
    allowed = [(k.lower(), v) for k, v in Unified().headers(later).items()]
    assert a.observe(key_id, allowed, 200, later) == 0.0
    await wait_for(lambda: b._states[key_id].routed_until == 0.0)


async def test_a_429_without_reset_headers_and_a_disabled_setting_route_nothing(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str]
) -> None:
    gw: Gateway = await gateway_factory(fake[1])
    off: Gateway = await gateway_factory(fake[1], quota_routing="false")
    key_id = (await gw.issue_key("dev"))["id"]
    now = time.time()
    assert gw.app[server.QUOTAS].observe(key_id, [("content-type", "application/json")], 429, now) == 0.0
    rejected = [(k.lower(), v) for k, v in Unified.rejected(30).headers(now).items()]
    assert off.app[server.QUOTAS].observe(key_id, rejected, 429, now) == 0.0
    assert off.app[server.QUOTAS].routed_until(key_id, now) == 0.0
    assert await gw.database.fetchrow("get-quota-routing", key_id) is None


async def test_keys_quota_shows_windows_status_and_routing_per_key(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], tmp_path: Path, database_url: str
) -> None:
    gw: Gateway = await gateway_factory(fake[1])
    alice = (await gw.issue_key("alice"))["id"]
    bob = (await gw.issue_key("bob"))["id"]
    quotas = gw.app[server.QUOTAS]
    now = time.time()
    warned = Unified("allowed_warning", 600, {"5h": ("allowed_warning", 0.82, 600), "7d": ("allowed", 0.4, 86400)})
    quotas.observe(alice, [(k.lower(), v) for k, v in warned.headers(now).items()], 200, now)
    quotas.observe(bob, [(k.lower(), v) for k, v in Unified.rejected(3600).headers(now).items()], 429, now)
    await quotas.drain()
    assert await quotas.flush_readings() == 0  # drained: nothing left to write

    env = cli_env(tmp_path, database_url=database_url)
    views = json.loads(run_cli(env, "keys", "quota", "--json").stdout)
    by_key = {v["access_key_id"]: v for v in views}
    assert by_key[alice]["unified_status"] == "allowed_warning" and not by_key[alice]["routed_to_bedrock"]
    assert by_key[alice]["windows"]["5h"]["utilization"] == 0.82
    assert by_key[bob]["routed_to_bedrock"] and by_key[bob]["routed_until"] is not None
    assert by_key[bob]["windows"]["5h"]["status"] == "rejected"
    only_bob = json.loads(run_cli(env, "keys", "quota", "--user", "bob", "--json").stdout)
    assert [v["access_key_id"] for v in only_bob] == [bob]
    table = run_cli(env, "keys", "quota").stdout
    print(table)
    assert "82%" in table and "routed to bedrock until" in table
    missing = run_cli(env, "keys", "quota", "--user", "nobody", check=False)
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr

    gauges = quotas.gauges(time.time())
    assert gauges == {
        "ccproxy_quota_routed_keys": 1.0,
        "ccproxy_quota_max_5h_utilization": 1.0,
        "ccproxy_quota_max_7d_utilization": 0.64,
    }


# --- through the relay ------------------------------------------------------------------------------

BEDROCK_TEXT = b"Hello from"  # both fakes say it (streams split it); provider headers tell them apart


async def post(
    http: aiohttp.ClientSession, gw: Gateway, key: str, stream: bool = False
) -> tuple[int, dict[str, str], bytes]:
    url = f"{gw.url}/ak/{key}/v1/messages"
    async with http.post(url, data=orjson.dumps({**BODY, "stream": stream}), headers=PLAN_HEADERS) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def bedrock_key(gw: Gateway, bedrock: Any, user: str = "dev") -> dict[str, Any]:
    from gateway import keys

    issued = await gw.issue_key(user)
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    return issued


async def test_a_rejected_key_goes_to_bedrock_without_the_plan_on_two_instances_until_the_reset(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    upstream, plan_url = fake
    first: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url)
    data = tmp_path / "second-instance"
    data.mkdir()
    master = first.config.data_path / "bedrock-master.key"
    issued = await bedrock_key(first, bedrock)
    (data / master.name).write_bytes(master.read_bytes())
    second: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url, data_dir=str(data))
    key = issued["key"]

    upstream.queue("rejected:3")
    status, headers, body = await post(http, first, key)
    # The rejection itself: the plan was asked, Bedrock answered, and the key is routed.
    assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock") and BEDROCK_TEXT in body
    resets_at = dt_parse(headers["x-ccproxy-plan-resets-at"])
    assert 1 <= resets_at - time.time() <= 4
    assert len(upstream.requests) == 1
    await wait_for(lambda: second.app[server.QUOTAS].routed_until(issued["id"], time.time()) > 0)

    for gw, stream in ((first, False), (second, False), (second, True), (first, True)):
        status, headers, body = await post(http, gw, key, stream=stream)
        assert (status, headers["x-ccproxy-provider"], headers["x-ccproxy-fallback"]) == (200, "bedrock", "quota")
        assert dt_parse(headers["x-ccproxy-plan-resets-at"]) == resets_at
        assert BEDROCK_TEXT in body
    assert len(upstream.requests) == 1, "the plan saw requests while the key was routed away"

    await asyncio.sleep(max(0.0, resets_at - time.time()) + 0.2)
    status, headers, _ = await post(http, second, key)
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")
    assert "x-ccproxy-plan-resets-at" not in headers
    assert len(upstream.requests) == 2
    await wait_for(lambda: first.app[server.QUOTAS]._states[issued["id"]].routed_until == 0.0)
    status, headers, _ = await post(http, first, key)
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan") and len(upstream.requests) == 3

    await second.flush_usage()
    rows = await first.usage_rows()
    outcomes = [(r["provider"], r["plan_outcome"]) for r in rows]
    assert outcomes == [("bedrock", "usage_limit")] + [("bedrock", "quota_exhausted")] * 4 + [("plan", None)] * 2
    assert all(r["is_fallback"] for r in rows[:5])


async def key_cache_sees(gw: Gateway, key: str, check: Any, within: float = 2.0) -> None:
    """Wait until the instance's key cache holds the change (it hears it by NOTIFY)."""
    deadline = time.monotonic() + within
    while not check(await gw.app[server.KEY_CACHE].lookup(key)):
        assert time.monotonic() < deadline, "the key cache never saw the change"
        await asyncio.sleep(0.01)


def dt_parse(iso: str) -> float:
    import datetime as dt

    assert iso.endswith("Z"), iso
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_without_bedrock_without_reset_headers_or_with_the_setting_off_the_plan_is_asked_every_time(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: Any, http: aiohttp.ClientSession
) -> None:
    upstream, plan_url = fake
    gw: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url)
    off: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url, quota_routing="false")
    bare = (await gw.issue_key("bare"))["key"]
    with_bedrock = (await bedrock_key(gw, bedrock, "withbedrock"))["key"]
    other = (await bedrock_key(gw, bedrock, "other"))["key"]

    # A key without Bedrock: the plan's rejection is relayed, unified headers unchanged, each time.
    for _ in range(2):
        upstream.queue("rejected:60")
        status, headers, _ = await post(http, gw, bare)
        assert (status, headers["x-ccproxy-fallback"]) == (429, "unavailable")
        assert headers[PREFIX + "status"] == "rejected" and headers[PREFIX + "5h-utilization"] == "1.0"
        assert "x-ccproxy-plan-resets-at" not in headers
    assert len(upstream.requests) == 2

    # A usage-limit 429 without reset headers: fallback as today, the plan asked again next time.
    for _ in range(2):
        upstream.queue("usage_limit")
        status, headers, _ = await post(http, gw, with_bedrock)
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
        assert "x-ccproxy-plan-resets-at" not in headers
    assert len(upstream.requests) == 4

    # Quota routing off: a rejection with a reset is an ordinary usage limit.
    for _ in range(2):
        upstream.queue("rejected:60")
        status, headers, _ = await post(http, off, other)
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
        assert "x-ccproxy-fallback" not in headers
    assert len(upstream.requests) == 6


async def test_unified_headers_of_a_plan_answer_reach_the_client_unchanged(
    gateway: Gateway, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession
) -> None:
    upstream, _ = fake
    upstream.unified = Unified(
        "allowed_warning", 900, {"5h": ("allowed_warning", 0.91, 900), "7d_opus": ("allowed", 0.33, 86400)}
    )
    key = (await gateway.issue_key("dev"))["key"]
    for stream in (False, True):
        sent = upstream.unified.headers()
        status, headers, _ = await post(http, gateway, key, stream=stream)
        assert status == 200
        got = {k: v for k, v in headers.items() if k.startswith(PREFIX)}
        assert got.keys() == sent.keys()
        assert all(abs(int(got[k]) - int(v)) <= 1 if k.endswith("reset") else got[k] == v for k, v in sent.items())
    assert gateway.app[server.QUOTAS].max_utilization("5h") == 0.91


async def test_bedrock_only_never_calls_the_plan(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: Any, http: aiohttp.ClientSession
) -> None:
    from gateway import keys, routing

    upstream, plan_url = fake
    gw: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url)
    issued = await bedrock_key(gw, bedrock)
    await routing.set_routing(gw.database, audit.SYSTEM, "user", "dev", routing.BEDROCK_ONLY)
    await key_cache_sees(gw, issued["key"], lambda ctx: ctx.routing == routing.BEDROCK_ONLY)
    for stream in (False, True):
        status, headers, body = await post(http, gw, issued["key"], stream=stream)
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock") and BEDROCK_TEXT in body
        assert "x-ccproxy-fallback" not in headers
    async with http.get(f"{gw.url}/ak/{issued['key']}/v1/models", headers=PLAN_HEADERS) as resp:
        assert resp.status == 200 and resp.headers["x-ccproxy-provider"] == "bedrock"
        assert "claude-sonnet-4-5" in {m["id"] for m in (await resp.json())["data"]}
    assert upstream.requests == []
    rows = await gw.usage_rows()
    assert [(r["provider"], r["plan_outcome"], r["is_fallback"]) for r in rows] == [
        ("bedrock", "bedrock_only", False)
    ] * 3

    # The key loses its Bedrock afterwards: a clear error for the operator, still no plan call.
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], None)
    await key_cache_sees(
        gw, issued["key"], lambda ctx: ctx.bedrock_key_blob is None and not ctx.bedrock_default_credentials
    )
    status, headers, body = await post(http, gw, issued["key"])
    assert status == 500 and b"routed bedrock_only but has no usable Bedrock credentials" in body
    assert upstream.requests == []


async def test_budgets_still_apply_to_a_key_routed_to_bedrock_for_quota(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: Any, http: aiohttp.ClientSession
) -> None:
    from decimal import Decimal

    upstream, plan_url = fake
    gw: Gateway = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url)
    issued = await bedrock_key(gw, bedrock)
    await update_user(gw.database, "dev", monthly_budget_usd=Decimal("1.00"))
    ctx = await gw.app[server.KEY_CACHE].lookup(issued["key"])
    await key_cache_sees(gw, issued["key"], lambda c: c.monthly_budget_usd == Decimal("1.00"))
    upstream.queue("rejected:60")
    status, headers, _ = await post(http, gw, issued["key"])
    assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
    ctx = await gw.app[server.KEY_CACHE].lookup(issued["key"])
    gw.app[server.BUDGETS].record(ctx, Decimal("5"))  # this month's Bedrock spend is over the budget
    status, headers, body = await post(http, gw, issued["key"])
    assert status == 429 and b"Monthly budget exceeded" in body
    assert (headers["x-ccproxy-provider"], headers["x-ccproxy-fallback"]) == ("bedrock", "quota")
    assert "x-ccproxy-plan-resets-at" in headers
    assert len(upstream.requests) == 1  # still routed: the plan was not asked
    rows = await gw.usage_rows()
    assert [(r["plan_outcome"], r["error_class"]) for r in rows] == [
        ("usage_limit", None),
        ("quota_exhausted", "budget_exceeded"),
    ]
