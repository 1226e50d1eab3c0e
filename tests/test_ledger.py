"""One ledger for both providers (SPEC §5, issue 14): list prices keyed by provider, exact
list costs for plan rows (5 m and 1 h cache writes and cache reads apart), unpriced rows
(never a silent 0), `ccproxy pricing unpriced|reprice`, rollups with both sums, and the
routing strategy's refusal of `bedrock_only` without Bedrock."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, make_config, run_cli

from gateway import audit, db, keys, ledger, pricing, routing, usage, users
from gateway import config as config_mod

D = Decimal
SONNET = "claude-sonnet-4-5-20250929"
SONNET_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
# The fake plan's `cache` answer: 10 input, 42 output, 1,000 tokens written to the 5-minute
# cache and 500 to the 1-hour cache, 3,000 read from it.
CACHE_TOKENS = ledger.tokens_of(10, 42, 1500, 1000, 500, 3000)
# By hand, at the Anthropic API's list price for Sonnet 4.5 (USD per million tokens:
# input 3, output 15, 5 m write 3.75, 1 h write 6, read 0.30):
#   10 × 3 = 30, 42 × 15 = 630, 1000 × 3.75 = 3750, 500 × 6 = 3000, 3000 × 0.30 = 900
#   → 8,310 millionths of a dollar.
CACHE_LIST_COST = D("0.008310")


def test_a_plan_row_is_valued_at_the_anthropic_list_price_with_5m_1h_writes_and_reads_apart() -> None:
    priced = ledger.price(pricing.PriceBook.default(), "plan", SONNET, None, NOW, CACHE_TOKENS)
    assert priced.list_price_snapshot is not None
    assert priced.list_price_id == ledger.snapshot_id(priced.list_price_snapshot)
    assert priced.cost_usd == 0 and priced.price_snapshot is None  # the plan costs the organisation nothing
    assert priced.list_cost_usd == CACHE_LIST_COST and priced.list_cost_usd.as_tuple().exponent == -6
    assert priced.list_price_snapshot is not None
    assert priced.list_price_snapshot["provider"] == "anthropic"
    assert (priced.list_price_snapshot["cache_write_5m"], priced.list_price_snapshot["cache_write_1h"]) == ("3.75", "6")
    assert not priced.unpriced


def test_a_total_cache_write_without_the_split_is_priced_as_5_minutes() -> None:
    tokens = ledger.tokens_of(0, 0, 1500, 0, 0, 0)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens) == (1500, 0)


def test_a_bedrock_row_carries_its_bedrock_price_in_both_columns() -> None:
    book = pricing.PriceBook(
        [
            *pricing.default_rows(),
            pricing.Price("claude-sonnet-4-5", "eu-west-1", D(4), D(20), D(5), D(8), D("0.4"), dt.date(2026, 1, 1)),
        ]
    )
    priced = ledger.price(book, "bedrock", SONNET_ID, "eu-west-1", NOW, CACHE_TOKENS)
    # 10 × 4 + 42 × 20 + 1000 × 5 + 500 × 8 + 3000 × 0.4 = 40 + 840 + 5000 + 4000 + 1200 millionths
    assert priced.cost_usd == priced.list_cost_usd == D("0.011080")
    assert priced.price_snapshot == priced.list_price_snapshot
    assert priced.price_snapshot is not None and priced.price_snapshot["region"] == "eu-west-1"


def test_an_unknown_model_is_unpriced_never_zero_and_a_row_without_tokens_costs_nothing() -> None:
    book = pricing.PriceBook.default()
    for provider in ("plan", "bedrock"):
        assert ledger.price(book, provider, "claude-mystery-9", None, NOW, CACHE_TOKENS) == ledger.UNPRICED
    assert ledger.price(book, "plan", None, None, NOW, CACHE_TOKENS) == ledger.UNPRICED
    assert ledger.price(book, "plan", "claude-mystery-9", None, NOW, ledger.tokens_of(0, 0, 0, 0, 0, 0)) == ledger.FREE


def test_anthropic_list_prices_ship_beside_the_bedrock_ones_in_one_table() -> None:
    book = pricing.PriceBook.default()
    assert book.models("anthropic") >= book.models("bedrock")
    for model in book.models("bedrock"):
        assert book.lookup(model, "*", NOW, "anthropic") is not None, model
    rows = pricing.load_rows(
        b"provider,model,region,input,output,cache_write_5m,cache_write_1h,cache_read,effective_date\n"
        b"anthropic,claude-mystery-9,*,1,2,3,4,0.5,2026-01-01\n"
        b",claude-mystery-9,us-east-1,1,2,3,4,0.5,2026-01-01\n",
        "csv",
    )
    assert [(r.provider, r.region) for r in rows] == [("anthropic", "*"), ("bedrock", "us-east-1")]
    with pytest.raises(ValueError, match="Anthropic API prices have no region"):
        pricing.load_rows(json.dumps([{**pricing.snapshot(rows[1]), "provider": "anthropic"}]).encode(), "json")
    with pytest.raises(ValueError, match="field 'provider': expected one of bedrock, anthropic"):
        pricing.load_rows(json.dumps([{**pricing.snapshot(rows[0]), "provider": "azure"}]).encode(), "json")


# --- stored rows, unpriced rows, reprice ---------------------------------------------------------


@pytest.fixture
async def database(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[db.Database, config_mod.Config]]:
    config = make_config(tmp_path, database_url, "http://127.0.0.1:9")
    database = await db.connect(config.replace(db_pool_size=2, db_max_overflow=1), database_url)
    db.load_queries()
    try:
        yield database, config
    finally:
        await database.close()


def event(
    user_id: int, key_id: int, provider: str, model: str, book: pricing.PriceBook, **extra: Any
) -> usage.UsageEvent:
    tokens = CACHE_TOKENS
    priced = ledger.price(book, provider, model, extra.get("region"), NOW, tokens)
    return usage.UsageEvent(
        request_id=usage.new_request_id(),
        created_at=NOW,
        user_id=user_id,
        access_key_id=key_id,
        endpoint="messages",
        provider=provider,
        is_fallback=provider == "bedrock",
        model=model,
        upstream_model=model,
        status=200,
        error_class=None,
        stream=False,
        input_tokens=10,
        output_tokens=42,
        cache_creation_input_tokens=1500,
        cache_creation_5m_tokens=1000,
        cache_creation_1h_tokens=500,
        cache_read_input_tokens=3000,
        cost_usd=priced.cost_usd,
        price_snapshot=priced.price_snapshot,
        list_cost_usd=priced.list_cost_usd,
        list_price_id=priced.list_price_id,
        unpriced=priced.unpriced,
        **extra,
    )


async def sums(database: db.Database) -> tuple[Any, ...]:
    async with database.acquire() as conn:
        rows = await conn.fetchrow(
            "SELECT sum(cost_usd) AS cost, sum(list_cost_usd) AS list, count(*) FILTER (WHERE unpriced) AS unpriced"
            " FROM usage_events"
        )
        month = await conn.fetchrow(
            "SELECT sum(cost_usd) AS cost, sum(list_cost_usd) AS list FROM usage_rollups WHERE granularity = $1",
            "month",
        )
    assert rows is not None and month is not None
    return rows["cost"], rows["list"], rows["unpriced"], month["cost"], month["list"]


async def test_unpriced_rows_are_listed_then_repriced_exactly_once_and_priced_rows_never_rewritten(
    database: tuple[db.Database, config_mod.Config], tmp_path: Path, database_url: str
) -> None:
    database_, config = database
    book = pricing.PriceBook.default()
    await users.create(database_, audit.SYSTEM, users.UserCreate(name="kim"))
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    user_id = (await users.get_by_name(database_, "kim")).id
    key_id = (await keys.issue(database_, hasher, audit.SYSTEM, user_id, keys.KeyIssue())).id
    plan = event(user_id, key_id, "plan", SONNET, book)
    plan_snapshot = ledger.price(book, "plan", SONNET, None, NOW, CACHE_TOKENS).list_price_snapshot
    assert plan.list_price_id is not None and plan_snapshot is not None
    bedrock = event(user_id, key_id, "bedrock", SONNET_ID, book, region="us-east-1")
    mystery_plan = event(user_id, key_id, "plan", "claude-mystery-9-20270101", book)
    mystery_bedrock = event(user_id, key_id, "bedrock", "us.anthropic.claude-mystery-9-20270101-v1:0", book)
    assert mystery_plan.unpriced and mystery_plan.cost_usd is None and mystery_plan.list_cost_usd is None
    async with database_.acquire() as conn:
        assert await usage.write_batch(conn, [plan, bedrock, mystery_plan, mystery_bedrock]) == 4
    bedrock_cost = bedrock.cost_usd
    assert bedrock_cost is not None
    # The rollups carry both sums and equal the rows; unpriced rows add nothing yet.
    assert await sums(database_) == (
        bedrock_cost,
        CACHE_LIST_COST + bedrock_cost,
        2,
        bedrock_cost,
        CACHE_LIST_COST + bedrock_cost,
    )

    env = cli_env(tmp_path, database_url=database_url)
    listed = json.loads(run_cli(env, "pricing", "unpriced", "--json").stdout)
    assert sorted(r["request_id"] for r in listed) == sorted([mystery_plan.request_id, mystery_bedrock.request_id])
    assert json.loads(run_cli(env, "pricing", "reprice", "--json").stdout) == {"repriced": 0, "still_unpriced": 2}

    # A price for the plan's mystery model arrives, and Sonnet's list price changes too:
    # only the unpriced plan row is priced, at the new price; the priced rows keep theirs.
    price = (
        "--input",
        "2",
        "--output",
        "10",
        "--cache-write-5m",
        "2.5",
        "--cache-write-1h",
        "4",
        "--cache-read",
        "0.2",
    )
    run_cli(
        env, "pricing", "set", "claude-mystery-9", "--provider", "anthropic", *price, "--effective-date", "2026-01-01"
    )
    run_cli(
        env, "pricing", "set", "claude-sonnet-4-5", "--provider", "anthropic", *price, "--effective-date", "2026-01-01"
    )
    listed_prices = json.loads(run_cli(env, "pricing", "list", "--json").stdout)
    assert {"provider": "anthropic", "model": "claude-mystery-9"}.items() <= listed_prices[0].items() or any(
        p["provider"] == "anthropic" and p["model"] == "claude-mystery-9" for p in listed_prices
    )
    assert json.loads(run_cli(env, "pricing", "reprice", "--json").stdout) == {"repriced": 1, "still_unpriced": 1}
    # 10 × 2 + 42 × 10 + 1000 × 2.5 + 500 × 4 + 3000 × 0.2 = 20 + 420 + 2500 + 2000 + 600 millionths
    mystery_list = D("0.005540")
    async with database_.acquire() as conn:
        rows = {str(r["request_id"]): r for r in await conn.fetch("SELECT * FROM usage_events")}
    repriced = rows[mystery_plan.request_id]
    assert (repriced["cost_usd"], repriced["list_cost_usd"], repriced["unpriced"]) == (0, mystery_list, False)
    snap = await database_.fetchval("get-price-snapshot", repriced["list_price_id"])
    assert (snap["model"], snap["provider"], D(snap["input"])) == ("claude-mystery-9", "anthropic", 2)
    assert rows[plan.request_id]["list_cost_usd"] == CACHE_LIST_COST  # not rewritten at the new price
    assert rows[plan.request_id]["list_price_id"] == plan.list_price_id
    assert await database_.fetchval("get-price-snapshot", plan.list_price_id) == plan_snapshot
    assert rows[bedrock.request_id]["cost_usd"] == bedrock_cost
    assert rows[mystery_bedrock.request_id]["unpriced"]
    assert await sums(database_) == (
        bedrock_cost,
        CACHE_LIST_COST + bedrock_cost + mystery_list,
        1,
        bedrock_cost,
        CACHE_LIST_COST + bedrock_cost + mystery_list,
    )
    assert json.loads(run_cli(env, "pricing", "reprice", "--json").stdout) == {"repriced": 0, "still_unpriced": 1}

    summary = run_cli(env, "usage", "summary", "--since", "2026-11-01", "--until", "2026-12-01").stdout
    print(summary)
    header = summary.splitlines()[1].split()
    assert header[-2:] == ["cost_usd", "list_cost_usd"]
    total = summary.splitlines()[-1].split()
    assert (D(total[-2]), D(total[-1])) == (bedrock_cost, CACHE_LIST_COST + bedrock_cost + mystery_list)
    table = run_cli(env, "usage", "summary", "--since", "2026-11-01", "--until", "2026-12-01", "--csv").stdout
    assert table.splitlines()[0].endswith("cost_usd,list_cost_usd")


# --- routing strategy ----------------------------------------------------------------------------


async def test_bedrock_only_is_refused_where_a_key_has_no_bedrock_and_the_most_specific_setting_wins(
    database: tuple[db.Database, config_mod.Config], tmp_path: Path, database_url: str
) -> None:
    database_, config = database
    hasher = keys.KeyHasher(keys.load_secret(config.key_hash_secret, config.data_path))
    await users.create(database_, audit.SYSTEM, users.UserCreate(name="kim"))
    issued_bare = await keys.issue(
        database_, hasher, audit.SYSTEM, (await users.get_by_name(database_, "kim")).id, keys.KeyIssue()
    )
    bare = {"id": issued_bare.id, "key": issued_bare.raw_key}
    env = cli_env(tmp_path, database_url=database_url)
    run_cli(env, "teams", "create", "platform")
    run_cli(env, "users", "update", "kim", "--team", "platform")

    for scope, target in (("keys", str(bare["id"])), ("users", "kim"), ("teams", "platform")):
        refused = run_cli(env, scope, "routing", target, "bedrock_only", check=False)
        assert refused.returncode == 1, scope
        assert f"access key {bare['id']} ({bare['key'][:9]}…) has no Bedrock" in refused.stderr
        assert "never calls the plan" in refused.stderr and refused.stderr.count("\n") == 1
    bad = run_cli(env, "keys", "routing", str(bare["id"]), "sometimes", check=False)
    assert bad.returncode == 1 and "routing must be plan_first, bedrock_only or inherit" in bad.stderr

    await keys.update(
        database_, audit.SYSTEM, bare["id"], keys.KeyUpdate(bedrock_default_credentials=True)
    )  # now it has Bedrock
    assert json.loads(run_cli(env, "teams", "routing", "platform", "bedrock_only", "--json").stdout)["routing"] == (
        "bedrock_only"
    )

    async def effective() -> str:
        row = await database_.fetchrow("get-key-context", hasher.digest(bare["key"]))
        assert row is not None
        return str(keys.KeyContext(row).routing)

    assert await effective() == "bedrock_only"  # from the team
    await routing.set_routing(database_, audit.SYSTEM, "user", "kim", routing.PLAN_FIRST)
    assert await effective() == "plan_first"  # the user's beats the team's
    await routing.set_routing(database_, audit.SYSTEM, "key", bare["id"], routing.BEDROCK_ONLY)
    assert await effective() == "bedrock_only"  # the key's beats the user's
    run_cli(env, "keys", "routing", str(bare["id"]), "inherit")
    assert await effective() == "plan_first"


# --- through the relay --------------------------------------------------------------------------


async def test_plan_and_bedrock_rows_written_by_the_relay_carry_exact_list_costs(
    gateway_factory: Any, fake: Any, bedrock: Any, http: Any
) -> None:
    import orjson

    from gateway import server

    upstream, plan_url = fake
    gw = await gateway_factory(plan_url, bedrock_endpoint_url=bedrock.url)
    issued = await gw.issue_key("dev")
    await keys.set_bedrock_key(gw.database, gw.app[server.KEYRING], audit.SYSTEM, issued["id"], bedrock.api_key)
    headers = {"x-api-key": "sk-ant-plan-credential-ledger", "anthropic-version": "2023-06-01"}
    for stream in (False, True):
        upstream.queue("cache")
        body = {"model": SONNET, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{gw.url}/ak/{issued['key']}/v1/messages", data=orjson.dumps(body), headers=headers) as r:
            assert r.status == 200 and r.headers["x-ccproxy-provider"] == "plan"
            await r.read()
    upstream.queue("status:529")
    bedrock.queue("cache")
    body = {"model": SONNET, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{gw.url}/ak/{issued['key']}/v1/messages", data=orjson.dumps(body), headers=headers) as r:
        assert r.status == 200 and r.headers["x-ccproxy-provider"] == "bedrock"
        await r.read()
    rows = await gw.usage_rows()
    plan_rows, bedrock_rows = rows[:2], rows[2:]
    for row in plan_rows:
        assert (row["cache_creation_5m_tokens"], row["cache_creation_1h_tokens"], row["cache_read_input_tokens"]) == (
            1000,
            500,
            3000,
        )
        assert (row["cost_usd"], row["list_cost_usd"], row["unpriced"]) == (0, CACHE_LIST_COST, False)
        assert row["price_snapshot"] is None
        snap = await gw.database.fetchval("get-price-snapshot", row["list_price_id"])
        assert (snap["provider"], snap["model"], snap["cache_write_1h"]) == ("anthropic", "claude-sonnet-4-5", "6")
    [row] = bedrock_rows
    # The fake Bedrock's cache answer has the same usage; Bedrock's default Sonnet 4.5 price equals
    # the list price, so both columns hold the same hand-computed value.
    assert (row["cost_usd"], row["list_cost_usd"]) == (CACHE_LIST_COST, CACHE_LIST_COST)
    # Its one snapshot is the price of both columns.
    assert row["price_snapshot"]["model"] == "claude-sonnet-4-5" and row["list_price_id"] is None
    assert row["region"] == gw.config.bedrock_default_region
    lines = await gw.database.fetchval("count-unpriced-usage")
    assert lines == 0
