"""Usage rollups, `ccproxy usage summary` and Bedrock cost rows (SPEC §5): summary totals
(JSON and CSV) equal the sum of the events; rollups bucket by local time in a non-UTC
reporting zone; the cost of a fallback row with 5 m / 1 h cache writes from an imported
price equals a hand-computed Decimal, and a price import reaches a running gateway within
5 s while the older row keeps its snapshot.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
import pytest
from conftest import Gateway, cli_env, make_config, run_cli

from bench.fake_anthropic import FakeAnthropic
from bench.fake_bedrock import FakeBedrock
from gateway import audit, db, keys, server, usage, usage_reports, users

MODEL = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
SONNET_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
PLAN_HEADERS = {"x-api-key": "sk-ant-plan-credential-rollup-test", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
TOTALS = (
    "requests",
    "fallback_requests",
    "error_requests",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_usd",
)


async def post(http: aiohttp.ClientSession, gw: Gateway, key: str, **extra: Any) -> int:
    data = orjson.dumps({**BODY, **extra})
    async with http.post(f"{gw.url}/ak/{key}/v1/messages", data=data, headers=PLAN_HEADERS) as resp:
        await resp.read()
        return resp.status


async def start_gateway(gateway_factory: Any, fake: tuple[FakeAnthropic, str], bedrock: FakeBedrock) -> Gateway:
    gw: Gateway = await gateway_factory(
        fake[1],
        bedrock_endpoint_url=bedrock.url,
        circuit_failures="1000",  # type: ignore[attr-defined]
    )
    return gw


async def bedrock_key(gw: Gateway, bedrock: FakeBedrock, user: str) -> dict[str, Any]:
    issued = await gw.issue_key(user)
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    return issued


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run_cli(env, *args).stdout)


# --- summary totals equal the events ------------------------------------------------------------------


async def test_usage_summary_by_user_key_model_day_json_and_csv_equals_the_events(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    database_url: str,
) -> None:
    upstream, _ = fake
    gw = await start_gateway(gateway_factory, fake, bedrock)
    ann = await bedrock_key(gw, bedrock, "ann")
    ann2 = await gw.issue_key("ann")
    bob = await bedrock_key(gw, bedrock, "bob")
    plan = [(ann, {}), (ann2, {"model": HAIKU}), (bob, {"stream": True}), (ann2, {"stream": True})]
    for issued, extra in plan * 5:
        assert await post(http, gw, issued["key"], **extra) == 200
    for issued, kind in ((ann, "cache"), (bob, "text"), (bob, "cache")):  # Bedrock rows, with a cost
        upstream.queue("status:529")
        bedrock.queue(kind)
        assert await post(http, gw, issued["key"]) == 200
    upstream.queue("status:500")  # a plan error without fallback (ann2 has no Bedrock key)
    assert await post(http, gw, ann2["key"]) == 500
    rows = await gw.usage_rows()
    assert len(rows) == 24
    assert all((r["cost_usd"] > 0) == (r["provider"] == "bedrock") for r in rows)
    assert all((r["price_snapshot"] is not None) == (r["provider"] == "bedrock") for r in rows)

    expected = {
        "requests": len(rows),
        "fallback_requests": sum(r["is_fallback"] for r in rows),
        "error_requests": sum(r["status"] >= 500 for r in rows),
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "cache_creation_input_tokens": sum(r["cache_creation_input_tokens"] for r in rows),
        "cache_read_input_tokens": sum(r["cache_read_input_tokens"] for r in rows),
        "cost_usd": sum(r["cost_usd"] for r in rows),
    }
    assert expected["fallback_requests"] == 3 and expected["error_requests"] == 1 and expected["cost_usd"] > 0

    today = dt.datetime.now(dt.UTC).date()
    since, until = today.isoformat(), (today + dt.timedelta(days=1)).isoformat()
    env = cli_env(tmp_path, database_url=database_url)
    span = ("--since", since, "--until", until)
    calls = [("user", "--json"), ("key", "--json"), ("model", "--json"), ("day", "--json")]
    calls += [("user", "--csv"), ("day", "--csv")]
    outputs = await asyncio.gather(
        *(asyncio.to_thread(run_cli, env, "usage", "summary", "--by", by, *span, fmt) for by, fmt in calls)
    )
    results = dict(zip(calls, (o.stdout for o in outputs), strict=True))

    def as_numbers(group: dict[str, Any]) -> dict[str, Any]:
        return {k: Decimal(group[k]) if k == "cost_usd" else int(group[k]) for k in TOTALS}

    user_of = {ann["id"]: "ann", ann2["id"]: "ann", bob["id"]: "bob"}
    prefix_of = {ann["id"]: ann["key"][:9] + "…", ann2["id"]: ann2["key"][:9] + "…", bob["id"]: bob["key"][:9] + "…"}

    def grouped(key_of: Any) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            g = out.setdefault(key_of(r), {k: Decimal(0) if k == "cost_usd" else 0 for k in TOTALS})
            g["requests"] += 1
            g["fallback_requests"] += int(r["is_fallback"])
            g["error_requests"] += int(r["status"] >= 500)
            for k in TOTALS[3:]:
                g[k] += r[k]
        return out

    groupings = {
        "user": grouped(lambda r: user_of[r["access_key_id"]]),
        "key": grouped(lambda r: prefix_of[r["access_key_id"]]),
        "model": grouped(lambda r: r["model"]),
        "day": grouped(lambda r: f"{today.isoformat()}T00:00"),
    }
    for by in ("user", "key", "model", "day"):
        result = json.loads(results[(by, "--json")])
        assert result["granularity"] == "day" and result["report_tz"] == "UTC"
        assert as_numbers(result["totals"]) == expected, by
        assert {g["group_key"]: as_numbers(g) for g in result["groups"]} == groupings[by], by
    for by in ("user", "day"):
        table = list(csv.reader(io.StringIO(results[(by, "--csv")])))
        assert table[0] == [by, *TOTALS]
        assert table[-1][0] == "TOTAL"
        assert as_numbers(dict(zip(TOTALS, table[-1][1:], strict=True))) == expected
        body = {line[0]: as_numbers(dict(zip(TOTALS, line[1:], strict=True))) for line in table[1:-1]}
        assert body == groupings[by]

    # The same totals from every other granularity that tiles the day.
    for by in ("hour", "minute"):
        result = await usage_reports.summary(
            gw.database,
            by=by,
            since=dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC),
            until=dt.datetime.fromisoformat(until).replace(tzinfo=dt.UTC),
            report_tz="UTC",
        )
        assert msgspec.structs.asdict(result.totals) == expected, by


# --- local buckets in a non-UTC reporting zone ---------------------------------------------------------------


def local_buckets(at: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict[str, dt.datetime]:
    """The rollup bucket starts of a moment, computed here independently of the SQL."""
    local = at.astimezone(tz)
    day = dt.datetime(local.year, local.month, local.day, tzinfo=tz)
    return {
        "minute": dt.datetime(local.year, local.month, local.day, local.hour, local.minute, tzinfo=tz),
        "hour": dt.datetime(local.year, local.month, local.day, local.hour, tzinfo=tz),
        "day": day,
        "week": dt.datetime.combine(day.date() - dt.timedelta(days=day.weekday()), dt.time(), tzinfo=tz),
        "month": dt.datetime(local.year, local.month, 1, tzinfo=tz),
    }


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
async def test_rollups_bucket_by_local_time_in_a_non_utc_reporting_zone(
    database_url: str, tmp_path: Path, zone: str
) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    moments = [
        dt.datetime(2026, 11, 1, 0, 30, tzinfo=tz),  # Los Angeles: the day daylight time ends
        dt.datetime(2026, 11, 30, 23, 30, tzinfo=tz),  # the last half hour of November, local
        dt.datetime(2026, 12, 1, 0, 30, tzinfo=tz),  # already December, local
    ]
    config = make_config(tmp_path, database_url, "http://127.0.0.1:9", report_tz=zone)
    database = await db.connect(config.replace(db_pool_size=1, db_max_overflow=1), database_url)
    try:
        db.load_queries()
        kim = await users.create(database, audit.SYSTEM, users.UserCreate(name="kim"))
        hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
        issued = await keys.issue(database, hasher, audit.SYSTEM, kim.id)
        user_id = kim.id
        events = [
            usage.UsageEvent(
                request_id=usage.new_request_id(),
                created_at=at.astimezone(dt.UTC),
                user_id=user_id,
                access_key_id=issued.id,
                endpoint="messages",
                provider="bedrock",
                is_fallback=True,
                model=MODEL,
                upstream_model=SONNET_ID,
                status=200,
                error_class=None,
                stream=True,
                input_tokens=10 * (i + 1),
                output_tokens=7,
                cost_usd=Decimal("0.000123") * (i + 1),
            )
            for i, at in enumerate(moments)
        ]
        async with database.acquire() as conn:
            assert await usage.write_batch(conn, events, zone) == 3
            assert await usage.write_batch(conn, events, zone) == 0  # a replay adds nothing
            rollups = await conn.fetch("SELECT granularity, bucket_start, requests, input_tokens FROM usage_rollups")
        expected: dict[tuple[str, dt.datetime], list[int]] = {}
        for event, at in zip(events, moments, strict=True):
            for granularity, start in local_buckets(at, tz).items():
                counts = expected.setdefault((granularity, start), [0, 0])
                counts[0] += 1
                counts[1] += event.input_tokens
        assert {(r["granularity"], r["bucket_start"]): [r["requests"], r["input_tokens"]] for r in rollups} == expected

        # The CLI reads naive --since/--until in CCPROXY_REPORT_TZ and labels buckets locally.
        env = cli_env(tmp_path, database_url=database_url, report_tz=zone)
        by_day = await asyncio.to_thread(
            cli_json, env, "usage", "summary", "--by", "day", "--since", "2026-11-01", "--until", "2026-12-02", "--json"
        )
        assert {g["group_key"]: g["requests"] for g in by_day["groups"]} == {
            "2026-11-01T00:00": 1,
            "2026-11-30T00:00": 1,
            "2026-12-01T00:00": 1,
        }
        assert by_day["totals"]["input_tokens"] == 60
        assert Decimal(by_day["totals"]["cost_usd"]) == Decimal("0.000738")
        by_month = await usage_reports.summary(
            database,
            by="month",
            since=dt.datetime(2026, 11, 1, tzinfo=tz),
            until=dt.datetime(2027, 1, 1, tzinfo=tz),
            report_tz=zone,
        )
        assert {g.group_key: g.requests for g in by_month.groups} == {
            "2026-11-01T00:00": 2,
            "2026-12-01T00:00": 1,
        }
    finally:
        await database.close()


# --- cost arithmetic and price changes on a running gateway -----------------------------------------------------


PRICE_CSV = """model,region,input,output,cache_write_5m,cache_write_1h,cache_read,effective_date
claude-sonnet-4-5,*,0.05,15.555555,3.777777,6.123457,0.333333,{date}
"""
# The fake Bedrock's `cache` answer: 10 input, 42 output, 1000 5-minute and 500 1-hour
# cache writes, 3000 cache reads. Each part is rounded half-up to six decimals, then added:
#   10 × 0.05 / 1e6         = 0.0000005     → 0.000001 (half-up)
#   42 × 15.555555 / 1e6    = 0.00065333331 → 0.000653
#   1000 × 3.777777 / 1e6   = 0.003777777   → 0.003778
#   500 × 6.123457 / 1e6    = 0.0030617285  → 0.003062
#   3000 × 0.333333 / 1e6   = 0.000999999   → 0.001000
# (rounding the exact sum 0.00849330781 instead would give 0.008493).
FIRST_COST = Decimal("0.008494")
# Then 10, 20, 1, 2 and 0.1 per million: 0.000100 + 0.000840 + 0.001000 + 0.001000 + 0.000300.
SECOND_COST = Decimal("0.003240")


async def test_fallback_cost_with_cache_5m_1h_from_imported_prices_and_a_price_import_within_5_s(
    gateway_factory: Any,
    fake: tuple[FakeAnthropic, str],
    bedrock: FakeBedrock,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    database_url: str,
) -> None:
    upstream, _ = fake
    upstream.default = "usage_limit"
    gw = await start_gateway(gateway_factory, fake, bedrock)
    issued = await bedrock_key(gw, bedrock, "lee")
    env = cli_env(tmp_path, database_url=database_url)
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    prices = gw.app[server.PRICES]

    async def picked_up(input_price: Decimal) -> float:
        started = time.monotonic()
        while prices.book.lookup(SONNET_ID, "us-east-1", dt.datetime.now(dt.UTC)).input != input_price:  # type: ignore[union-attr]
            assert time.monotonic() - started < 5, "a running gateway did not use the new price within 5 s"
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    csv_file = tmp_path / "prices.csv"
    csv_file.write_text(PRICE_CSV.format(date=yesterday.isoformat()))
    imported = await asyncio.to_thread(run_cli, env, "pricing", "import", str(csv_file))
    assert "1" in imported.stdout  # (`--json` is covered by its own test below)
    first_pickup = await picked_up(Decimal("0.05"))
    bedrock.queue("cache")
    assert await post(http, gw, issued["key"], stream=True) == 200

    json_file = tmp_path / "prices.json"
    row = {"model": "claude-sonnet-4-5", "region": "*", "input": "10", "output": "20", "cache_write_5m": "1"}
    row |= {"cache_write_1h": "2", "cache_read": "0.1", "effective_date": today.isoformat()}
    json_file.write_bytes(orjson.dumps({"prices": [row]}))
    await asyncio.to_thread(run_cli, env, "pricing", "import", str(json_file))
    second_pickup = await picked_up(Decimal(10))
    bedrock.queue("cache")
    assert await post(http, gw, issued["key"]) == 200

    first, second = await gw.usage_rows()
    for r in (first, second):
        assert (r["provider"], r["is_fallback"], r["upstream_model"]) == ("bedrock", True, SONNET_ID)
        assert (r["input_tokens"], r["output_tokens"]) == (10, 42)
        assert (r["cache_creation_input_tokens"], r["cache_read_input_tokens"]) == (1500, 3000)
        assert (r["cache_creation_5m_tokens"], r["cache_creation_1h_tokens"]) == (1000, 500)
    assert first["cost_usd"] == FIRST_COST and first["cost_usd"].as_tuple().exponent == -6
    snapshot = first["price_snapshot"]
    assert (snapshot["model"], snapshot["region"], snapshot["effective_date"]) == (
        "claude-sonnet-4-5",
        "*",
        yesterday.isoformat(),
    )
    assert {k: Decimal(snapshot[k]) for k in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")} == {
        "input": Decimal("0.05"),
        "output": Decimal("15.555555"),
        "cache_write_5m": Decimal("3.777777"),
        "cache_write_1h": Decimal("6.123457"),
        "cache_read": Decimal("0.333333"),
    }
    assert second["cost_usd"] == SECOND_COST
    assert (
        Decimal(second["price_snapshot"]["input"]) == 10
        and second["price_snapshot"]["effective_date"] == today.isoformat()
    )

    # History: both rows listed; the first usage row still has its own snapshot and cost.
    listed = await asyncio.to_thread(cli_json, env, "pricing", "list", "--json")
    mine = [p for p in listed if p["model"] == "claude-sonnet-4-5" and p["region"] == "*"]
    assert {p["effective_date"]: Decimal(p["input"]) for p in mine if p["effective_date"] >= yesterday.isoformat()} == {
        yesterday.isoformat(): Decimal("0.05"),
        today.isoformat(): Decimal(10),
    }
    again = await gw.database.pool.fetchrow(
        "SELECT cost_usd, price_snapshot FROM usage_events WHERE request_id = $1", first["request_id"]
    )
    assert (again["cost_usd"], again["price_snapshot"]) == (FIRST_COST, first["price_snapshot"])
    month = await gw.database.pool.fetchval("SELECT sum(cost_usd) FROM usage_rollups WHERE granularity = 'month'")
    assert month == FIRST_COST + SECOND_COST
    print(f"\n[rollups] new prices in use {first_pickup:.3f} s and {second_pickup:.3f} s after `pricing import` exited")


def test_pricing_import_json_output(tmp_path: Path, database_url: str) -> None:
    """`ccproxy pricing import FILE --json` prints what it imported (machine-readable)."""
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text(PRICE_CSV.format(date="2026-01-01"))
    env = cli_env(tmp_path, database_url=database_url)
    result = run_cli(env, "pricing", "import", str(csv_file), "--json", check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"imported": 1, "file": str(csv_file)}
