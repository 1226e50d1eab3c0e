"""Budgets and limits (SPEC §6) through in-process gateways on the fake plan and the fake
Bedrock: the budget boundary (the crossing request, the one after, concurrency, several
instances), period rollover in non-UTC reporting zones, alerts (log event, webhook, once
across instances), the per-key RPM limit and model allow-lists for users and teams.

Prices: claude-sonnet-4-5 is repriced so that one fake Bedrock `text` answer (25 input,
12 output tokens) costs exactly $0.40 (25 × $16,000 per million; output free).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import types
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import LOGS, Gateway, cli_env, run_cli, start_site, update_user

from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, errors, keys, limits, price_table, pricing, server, teams, usage, users

MODEL = "claude-sonnet-4-5-20250929"
SONNET_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "claude-haiku-4-5-20251001"
PLAN_HEADERS = {"x-api-key": "sk-ant-plan-credential-budget-test", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
COST = Decimal("0.400000")
FAST = {"usage_flush_ms": "20", "budget_refresh_seconds": "0.2", "circuit_failures": "1000"}


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start(gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock) -> Start:
    """A gateway whose plan always answers usage_limit (so messages go to the fake Bedrock),
    with the $0.40 price in force."""
    fake[0].default = "usage_limit"

    async def go(**settings: str) -> Gateway:
        settings = {**FAST, "bedrock_endpoint_url": bedrock.url, **settings}  # type: ignore[attr-defined]
        gw: Gateway = await gateway_factory(fake[1], **settings)
        await set_price(gw, Decimal(16000))
        return gw

    return go


async def set_price(gw: Gateway, input_price: Decimal) -> None:
    today = dt.datetime.now(dt.UTC).date()
    row = pricing.Price("claude-sonnet-4-5", "*", input_price, Decimal(0), Decimal(0), Decimal(0), Decimal(0), today)
    await price_table.upsert(gw.database, audit.SYSTEM, [row])
    deadline = time.monotonic() + 5
    while (price := gw.app[server.PRICES].book.lookup(SONNET_ID, "us-east-1", dt.datetime.now(dt.UTC))) is None or (
        price.input != input_price
    ):
        assert time.monotonic() < deadline, "price change not picked up within 5 s"
        await asyncio.sleep(0.02)


async def bedrock_key(gw: Gateway, bedrock: FakeBedrock, user: str) -> dict[str, Any]:
    issued = await gw.issue_key(user)
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    return issued


async def post(
    http: aiohttp.ClientSession, gw: Gateway | str, key: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    base = gw if isinstance(gw, str) else gw.url
    async with http.post(f"{base}/ak/{key}/v1/messages", data=orjson.dumps(body or BODY), headers=PLAN_HEADERS) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, orjson.loads(await r.read())


def budget_message(usage_usd: str, budget_usd: str, zone: str = "UTC") -> str:
    resets = limits.next_month(limits.month_start(dt.datetime.now(dt.UTC), zoneinfo.ZoneInfo(zone))).date()
    return (
        f"Monthly budget exceeded. Current usage: ${usage_usd}, Budget limit: ${budget_usd}. "
        f"Budget resets on {resets.isoformat()}."
    )


def assert_budget_429(status: int, headers: dict[str, str], body: dict[str, Any], message: str) -> None:
    assert status == 429, body
    assert body["type"] == "error"
    assert body["error"] == {"type": "rate_limit_error", "message": message}
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ccproxy-request-id"]


async def settle() -> None:
    """A user/team/key change reaches the key caches by NOTIFY; give it a moment."""
    await asyncio.sleep(0.2)


# --- the boundary ----------------------------------------------------------------------------------------


async def test_the_crossing_request_is_served_the_next_gets_429_and_plan_calls_still_answer(
    start: Start, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gw = await start()
    issued = await bedrock_key(gw, bedrock, "ada")
    env = cli_env(tmp_path, database_url=gw.config.database_url or "")
    await asyncio.to_thread(run_cli, env, "users", "update", "ada", "--monthly-budget", "1", "--json")
    await settle()

    # $0.40, $0.80 (under), $1.20: the third request crosses the $1.00 budget and is served.
    for _ in range(3):
        status, headers, _ = await post(http, gw, issued["key"])
        assert (status, headers["x-ccproxy-provider"]) == (200, "bedrock")
    assert len(bedrock.requests) == 3

    status, headers, body = await post(http, gw, issued["key"])
    assert_budget_429(status, headers, body, budget_message("1.20", "1.00"))
    assert len(bedrock.requests) == 3, "the budget is checked before any Bedrock call"

    # The plan is never budget-checked: a plan call of the same user still answers.
    fake[0].queue("text")
    status, headers, body = await post(http, gw, issued["key"])
    assert (status, headers["x-ccproxy-provider"]) == (200, "plan")

    rows = await gw.usage_rows()
    assert [(r["provider"], r["status"], r["error_class"], r["cost_usd"]) for r in rows] == [
        ("bedrock", 200, None, COST),
        ("bedrock", 200, None, COST),
        ("bedrock", 200, None, COST),
        ("bedrock", 429, "budget_exceeded", Decimal(0)),
        ("plan", 200, None, Decimal(0)),
    ]
    assert all(r["cost_usd"].as_tuple().exponent == -6 for r in rows), "money has six decimals"
    assert rows[-1]["price_snapshot"] is None
    month = await gw.database.pool.fetchval(
        "SELECT sum(cost_usd) FROM usage_rollups WHERE granularity = 'month' AND user_id = $1", rows[0]["user_id"]
    )
    assert month == Decimal("1.200000")


async def test_concurrent_requests_at_the_boundary_overshoot_by_at_most_those_in_flight(
    start: Start, bedrock: FakeBedrock, http: aiohttp.ClientSession
) -> None:
    """limits.py: a request is admitted while the spend this instance knows is under the
    budget, and its cost is known only when it ends. So with N requests in flight when
    the budget is crossed, spend ≤ budget + N × (largest request cost) on one instance."""
    gw = await start()
    issued = await bedrock_key(gw, bedrock, "bo")
    await update_user(gw.database, "bo", monthly_budget_usd=Decimal("1.00"))
    await settle()
    for _ in range(2):  # $0.80 spent, under the budget
        assert (await post(http, gw, issued["key"]))[0] == 200

    in_flight = 10
    bedrock.queue(*["slow_headers:0.3"] * in_flight)  # all ten are in flight together
    results = await asyncio.gather(*(post(http, gw, issued["key"]) for _ in range(in_flight)))
    admitted = sum(1 for status, _, _ in results if status == 200)
    assert admitted == in_flight  # each was checked while the known spend was $0.80

    rows = await gw.usage_rows()
    spent = sum(r["cost_usd"] for r in rows)
    assert spent == COST * (2 + in_flight)
    assert spent - Decimal("1.00") <= in_flight * COST  # the stated bound
    await asyncio.sleep(0.3)  # one refresh (see the refresh race test below)
    status, headers, body = await post(http, gw, issued["key"])
    assert_budget_429(status, headers, body, budget_message(f"{spent:.2f}", "1.00"))


async def test_a_second_instance_sees_the_spend_within_flush_plus_refresh(
    start: Start, bedrock: FakeBedrock, http: aiohttp.ClientSession, second_instance: Second
) -> None:
    """With several instances, another instance's spend becomes visible after at most
    flush + refresh seconds (limits.py); then it refuses too."""
    a = await start()
    b = await second_instance(a)
    issued = await bedrock_key(a, bedrock, "cy")
    await update_user(a.database, "cy", monthly_budget_usd=Decimal("1.00"))
    await settle()
    for _ in range(3):
        assert (await post(http, a, issued["key"]))[0] == 200
    crossed = time.monotonic()
    ctx = await b.app[server.KEY_CACHE].lookup(issued["key"])
    while b.app[server.BUDGETS].spent(ctx)[0] < 3 * COST:
        assert time.monotonic() - crossed < 0.02 + 0.2 + 1.0, "not visible within flush + refresh (+1 s slack)"
        await asyncio.sleep(0.01)
    visible = time.monotonic() - crossed
    status, headers, body = await post(http, b, issued["key"])
    assert_budget_429(status, headers, body, budget_message("1.20", "1.00"))
    print(f"\n[budgets] another instance saw the spend after {visible * 1000:.0f} ms (flush 20 ms + refresh 200 ms)")


Second = Callable[[Gateway], Awaitable[Gateway]]


@pytest.fixture
async def second_instance(gateway_factory: Any) -> AsyncIterator[Second]:
    """Another gateway on the same database and data directory (its own journal)."""
    runners: list[web.AppRunner] = []

    async def go(first: Gateway) -> Gateway:
        app = server.create_app(first.config, journal_dir=first.config.data_path / "journal" / "w1")
        runner, url = await start_site(app)
        runners.append(runner)
        return Gateway(url, app, first.config)

    yield go
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("user_budget", "team_budget", "message"),
    [
        (Decimal("100.00"), Decimal("0.50"), ("0.80", "0.50")),
        (Decimal("0.50"), Decimal("100.00"), ("0.80", "0.50")),
    ],
    ids=["team-tighter", "user-tighter"],
)
async def test_team_budgets_the_tighter_wins(
    start: Start,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    user_budget: Decimal,
    team_budget: Decimal,
    message: tuple[str, str],
) -> None:
    gw = await start()
    dee = await bedrock_key(gw, bedrock, "dee")
    eli = await bedrock_key(gw, bedrock, "eli")
    await teams.create(gw.database, audit.SYSTEM, teams.TeamCreate(name="platform", monthly_budget_usd=team_budget))
    await update_user(gw.database, "dee", team="platform", monthly_budget_usd=user_budget)
    await update_user(gw.database, "eli", team="platform")
    await settle()
    for _ in range(2):
        assert (await post(http, gw, dee["key"]))[0] == 200
    status, headers, body = await post(http, gw, dee["key"])
    assert_budget_429(status, headers, body, budget_message(*message))
    status, headers, body = await post(http, gw, eli["key"])
    if team_budget < user_budget:  # the whole team is out of budget
        assert_budget_429(status, headers, body, budget_message("0.80", "0.50"))
    else:  # only dee is
        assert status == 200


async def test_spend_recorded_while_a_refresh_reads_the_database_is_not_forgotten(database_url: str) -> None:
    """Budgets.refresh() snapshots the unflushed events, awaits the month rollups, then
    replaces the local spend with that snapshot: a cost record()ed during the await is
    dropped until the next refresh, so a crossed budget admits requests again (beyond
    the overshoot bound limits.py states)."""
    from conftest import make_config

    from gateway import db

    config = make_config(Path("/nonexistent"), database_url, "http://127.0.0.1:9")
    database = await db.connect(config.replace(db_pool_size=1, db_max_overflow=1), database_url)
    try:
        db.load_queries()
        budgets = limits.Budgets(database, report_tz="UTC", refresh=60, webhook_url=None)
        ctx = context("1.00")
        reading = asyncio.Event()
        release = asyncio.Event()
        real_fetch = database.fetch

        async def slow_fetch(name: str, *args: Any) -> Any:
            rows = await real_fetch(name, *args)  # the rollups before the cost below is flushed
            reading.set()
            await release.wait()
            return rows

        database.fetch = slow_fetch  # type: ignore[method-assign]
        refreshing = asyncio.create_task(budgets.refresh([]))
        await reading.wait()
        budgets.record(ctx, Decimal("1.50"))  # a Bedrock request ends meanwhile (its event still queued)
        with pytest.raises(errors.RateLimited):
            budgets.check(ctx)
        release.set()
        await refreshing
        assert budgets.spent(ctx)[0] == Decimal("1.50"), "the refresh forgot a cost recorded while it ran"
        with pytest.raises(errors.RateLimited):
            budgets.check(ctx)
    finally:
        await database.close()


# --- period rollover in the reporting zone ------------------------------------------------------------------


def context(budget: str | None, thresholds: list[int] | None = None) -> Any:
    return types.SimpleNamespace(
        user_id=1,
        user_name="zed",
        team_id=None,
        team_name=None,
        monthly_budget_usd=Decimal(budget) if budget else None,
        team_budget_usd=None,
        alert_thresholds=thresholds or [],
        team_alert_thresholds=[],
    )


@pytest.mark.parametrize(
    ("zone", "last_minute_of_november", "december"),
    [
        ("America/Los_Angeles", "2026-12-01T07:59:00+00:00", "2026-12-01T08:00:00+00:00"),
        ("Asia/Tokyo", "2026-11-30T14:59:00+00:00", "2026-11-30T15:00:00+00:00"),
        ("UTC", "2026-11-30T23:59:00+00:00", "2026-12-01T00:00:00+00:00"),
    ],
)
def test_month_start_and_next_month_in_the_reporting_zone(
    zone: str, last_minute_of_november: str, december: str
) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    november = limits.month_start(dt.datetime.fromisoformat(last_minute_of_november), tz)
    assert (november.year, november.month, november.day, november.hour) == (2026, 11, 1, 0)
    assert limits.next_month(november) == dt.datetime.fromisoformat(december)
    assert limits.month_start(dt.datetime.fromisoformat(december), tz) == dt.datetime.fromisoformat(december)
    # Los Angeles: November starts in daylight time (-07:00), December in standard time (-08:00).
    if zone == "America/Los_Angeles":
        assert november.utcoffset() == dt.timedelta(hours=-7)
        assert limits.next_month(november).utcoffset() == dt.timedelta(hours=-8)


@pytest.mark.parametrize(
    ("zone", "local_2330", "midnight_utc"),
    [
        ("America/Los_Angeles", "2026-12-01T07:30:00+00:00", "2026-12-01T08:00:00+00:00"),
        ("Asia/Tokyo", "2026-11-30T14:30:00+00:00", "2026-11-30T15:00:00+00:00"),
    ],
)
async def test_budget_period_rolls_over_at_local_midnight_and_reads_the_local_month_rollup(
    database_url: str, tmp_path: Path, zone: str, local_2330: str, midnight_utc: str
) -> None:
    """An event at 2026-11-30 23:30 local belongs to November's budget and November's
    month rollup (bucket 2026-11-01 00:00 local); at local midnight the budget resets."""
    from conftest import make_config

    from gateway import db

    config = make_config(tmp_path, database_url, "http://127.0.0.1:9", report_tz=zone)
    database = await db.connect(config.replace(db_pool_size=1, db_max_overflow=1), database_url)
    try:
        db.load_queries()
        zed = await users.create(database, audit.SYSTEM, users.UserCreate(name="zed"))
        hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
        issued = await keys.issue(database, hasher, audit.SYSTEM, zed.id)
        user_id = zed.id
        at = dt.datetime.fromisoformat(local_2330)
        event = usage.UsageEvent(
            request_id=usage.new_request_id(),
            created_at=at,
            user_id=user_id,
            access_key_id=issued.id,
            endpoint="messages",
            provider="bedrock",
            is_fallback=True,
            model=MODEL,
            upstream_model=SONNET_ID,
            status=200,
            error_class=None,
            stream=False,
            cost_usd=Decimal("1.500000"),
        )
        async with database.acquire() as conn:
            assert await usage.write_batch(conn, [event], zone) == 1
            bucket = await conn.fetchval(
                "SELECT bucket_start FROM usage_rollups WHERE granularity = 'month' AND user_id = $1", user_id
            )
        tz = zoneinfo.ZoneInfo(zone)
        assert bucket == dt.datetime(2026, 11, 1, tzinfo=tz)

        now = [at + dt.timedelta(minutes=15)]  # 23:45 local, still November
        budgets = limits.Budgets(database, report_tz=zone, refresh=60, webhook_url=None, clock=lambda: now[0])
        await budgets.refresh()
        ctx = context("1.00")
        ctx.user_id = user_id
        assert budgets.spent(ctx)[0] == Decimal("1.5")
        with pytest.raises(errors.RateLimited) as raised:
            budgets.check(ctx)
        assert raised.value.message == (
            "Monthly budget exceeded. Current usage: $1.50, Budget limit: $1.00. Budget resets on 2026-12-01."
        )
        assert raised.value.headers["retry-after"] == "900"  # 15 minutes to local midnight

        now[0] = dt.datetime.fromisoformat(midnight_utc)  # 00:00 local on December 1st
        budgets.check(ctx)  # a new period: nothing spent
        await budgets.refresh()
        assert budgets.spent(ctx)[0] == 0
        budgets.check(ctx)
        now[0] = dt.datetime.fromisoformat(midnight_utc) - dt.timedelta(seconds=1)
        assert limits.month_start(now[0], tz).month == 11
    finally:
        await database.close()


# --- alerts -------------------------------------------------------------------------------------------------


class Webhook:
    """A tiny receiver on loopback: answers `fail_first` requests 503, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        if self.attempts <= self.fail_first:
            return web.Response(status=503)
        self.received.append(body)
        return web.Response(status=204)


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook(fail_first=1)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner, url = await start_site(app)
    yield hook, url + "/hook"
    await runner.cleanup()


async def test_alerts_fire_once_across_two_instances_as_a_log_event_and_a_retried_webhook(
    start: Start,
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    webhook: tuple[Webhook, str],
    second_instance: Second,
) -> None:
    hook, url = webhook
    LOGS.data.clear()
    a = await start(alert_webhook_url=url)
    b = await second_instance(a)
    issued = await bedrock_key(a, bedrock, "fay")
    # Only the 80 % threshold here: the sum of both instances also crosses 100 %, which the
    # next test covers.
    await update_user(a.database, "fay", monthly_budget_usd=Decimal("1.00"), alert_thresholds=[80])
    await settle()
    ctx = await b.app[server.KEY_CACHE].lookup(issued["key"])

    assert (await post(http, a, issued["key"]))[0] == 200  # $0.40
    deadline = time.monotonic() + 3
    while b.app[server.BUDGETS].spent(ctx)[0] < COST:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # Both instances take the spend from $0.40 to $0.80 at once: both see 80 % crossed.
    results = await asyncio.gather(post(http, a, issued["key"]), post(http, b, issued["key"]))
    assert [status for status, _, _ in results] == [200, 200]

    deadline = time.monotonic() + 5
    while not hook.received:
        assert time.monotonic() < deadline, "no webhook POST"
        await asyncio.sleep(0.02)
    await a.app[server.BUDGETS].drain()
    await b.app[server.BUDGETS].drain()
    await asyncio.sleep(0.3)
    rows = await a.database.pool.fetch("SELECT scope, threshold, usage_usd, budget_usd FROM budget_alerts")
    assert [(r["scope"], r["threshold"]) for r in rows] == [("user", 80)]
    assert hook.attempts == 2  # one 503, one retry
    [alert] = hook.received
    user_id = (await users.get_by_name(a.database, "fay")).id
    assert alert == {
        "event": "budget_alert",
        "scope": "user",
        "scope_id": user_id,
        "name": "fay",
        "period": limits.month_start(dt.datetime.now(dt.UTC), zoneinfo.ZoneInfo("UTC")).date().isoformat(),
        "threshold_percent": 80,
        "usage_usd": "0.800000",
        "budget_usd": "1.00",
    }
    logged = [line for line in LOGS.lines() if line.get("event") == "budget_alert"]
    assert len(logged) == 1 and logged[0]["threshold_percent"] == 80


async def test_a_threshold_crossed_by_the_sum_of_two_instances_still_alerts(
    start: Start,
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    webhook: tuple[Webhook, str],
    second_instance: Second,
) -> None:
    """$0.40 + two concurrent $0.40 on two instances = $1.20: 100 % of the $1.00 budget is
    used (and the user is refused from then on), but neither instance recorded a cost
    that took *its* view past 100 %. The 100 % alert must still fire once per period."""
    hook, url = webhook
    hook.fail_first = 0
    a = await start(alert_webhook_url=url)
    b = await second_instance(a)
    issued = await bedrock_key(a, bedrock, "gus")
    await update_user(a.database, "gus", monthly_budget_usd=Decimal("1.00"))
    await settle()
    ctx = await b.app[server.KEY_CACHE].lookup(issued["key"])
    assert (await post(http, a, issued["key"]))[0] == 200
    deadline = time.monotonic() + 3
    while b.app[server.BUDGETS].spent(ctx)[0] < COST:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await asyncio.gather(post(http, a, issued["key"]), post(http, b, issued["key"]))
    deadline = time.monotonic() + 3
    while a.app[server.BUDGETS].spent(ctx)[0] < 3 * COST:  # after flush + refresh
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert (await post(http, a, issued["key"]))[0] == 429  # the budget is used up ...
    deadline = time.monotonic() + 3  # ... and stays so, well past flush + refresh
    while {r["threshold_percent"] for r in hook.received} != {80, 100}:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    thresholds = sorted(r["threshold"] for r in await a.database.pool.fetch("SELECT threshold FROM budget_alerts"))
    assert thresholds == [80, 100], "the 100 % alert never fired although the budget is used up"


# --- RPM and allow-lists --------------------------------------------------------------------------------------


async def test_per_key_rpm_limit_gives_429_with_retry_after_and_can_be_removed(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    upstream, plan_url = fake
    gw: Gateway = await gateway_factory(plan_url)
    limited = await gw.issue_key("hal")
    other = await gw.issue_key("hal")
    env = cli_env(tmp_path, database_url=gw.config.database_url or "")
    await asyncio.to_thread(run_cli, env, "keys", "update", str(limited["id"]), "--rpm", "3", "--json")
    await asyncio.sleep(0.2)
    before = len(upstream.requests)
    for _ in range(3):
        assert (await post(http, gw, limited["key"]))[0] == 200
    status, headers, body = await post(http, gw, limited["key"])
    assert status == 429
    assert body["error"] == {
        "type": "rate_limit_error",
        "message": "Rate limit of 3 requests per minute for this access key exceeded.",
    }
    assert 1 <= int(headers["retry-after"]) <= 61
    assert len(upstream.requests) == before + 3, "a rate-limited request never reaches the plan"
    assert (await post(http, gw, other["key"]))[0] == 200  # per key, not per user

    await asyncio.to_thread(run_cli, env, "keys", "update", str(limited["id"]), "--rpm", "0", "--json")
    await asyncio.sleep(0.2)
    assert (await post(http, gw, limited["key"]))[0] == 200
    rows = await gw.usage_rows()
    assert [r["status"] for r in rows if r["access_key_id"] == limited["id"]] == [200, 200, 200, 429, 200]


async def test_model_allow_lists_for_users_and_teams_give_403_naming_the_allowed_models(
    gateway_factory: Any, fake: tuple[FakeAnthropic, str], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    upstream, plan_url = fake
    gw: Gateway = await gateway_factory(plan_url)
    ivy = await gw.issue_key("ivy")
    env = cli_env(tmp_path, database_url=gw.config.database_url or "")
    await asyncio.to_thread(run_cli, env, "users", "update", "ivy", "--allow-models", "claude-sonnet-*", "--json")
    await asyncio.sleep(0.2)
    before = len(upstream.requests)
    status, _, body = await post(http, gw, ivy["key"], {**BODY, "model": HAIKU})
    assert status == 403
    assert body["error"] == {
        "type": "permission_error",
        "message": f"Model '{HAIKU}' is not allowed for your user. Allowed models: claude-sonnet-*.",
    }
    assert len(upstream.requests) == before
    assert (await post(http, gw, ivy["key"]))[0] == 200

    # A team list applies as well: both must allow the model.
    await asyncio.to_thread(
        run_cli, env, "teams", "create", "mobile", "--allow-models", "claude-haiku-*,claude-opus-*", "--json"
    )
    await asyncio.to_thread(run_cli, env, "users", "update", "ivy", "--team", "mobile", "--allow-models", "all")
    await asyncio.sleep(0.2)
    status, _, body = await post(http, gw, ivy["key"])
    assert status == 403
    assert body["error"]["message"] == (
        f"Model '{MODEL}' is not allowed for your team. Allowed models: claude-haiku-*, claude-opus-*."
    )
    assert (await post(http, gw, ivy["key"], {**BODY, "model": HAIKU}))[0] == 200
    listed = orjson.loads((await asyncio.to_thread(run_cli, env, "teams", "list", "--json")).stdout)
    assert [(t["name"], t["members"], t["allowed_models"]) for t in listed] == [
        ("mobile", 1, ["claude-haiku-*", "claude-opus-*"])
    ]
    rows = await gw.usage_rows()
    assert [(r["status"], r["error_class"]) for r in rows] == [
        (403, "permission_error"),
        (200, None),
        (403, "permission_error"),
        (200, None),
    ]
