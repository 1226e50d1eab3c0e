"""One ledger for both providers (SPEC §5): every usage row is priced twice.

`cost_usd` is what the organisation pays: Bedrock's price for a Bedrock row, 0 for a plan
row (the developer's plan pays). `list_cost_usd` is the same tokens at the provider's list
price: the Anthropic API's for the model a plan served, Bedrock's own for a Bedrock row.
So what the plans delivered stands beside what Bedrock cost. A row whose model has no
price is never priced at 0: both costs stay NULL and the row is marked `unpriced` until
`ccproxy pricing reprice` finds a price for it; rows already priced are never rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import orjson

from gateway import db, pricing

_ZERO = Decimal("0")
PLAN_LIST_PROVIDER = pricing.ANTHROPIC  # a plan row's list price is the Anthropic API's


class Priced(msgspec.Struct, frozen=True):
    """The ledger columns of one usage row. `list_price_snapshot` is the list price used;
    a plan row stores it by reference (`list_price_id`, a row of price_snapshots), a
    Bedrock row as its `price_snapshot` (the same price)."""

    cost_usd: Decimal | None
    price_snapshot: dict[str, str] | None
    list_cost_usd: Decimal | None
    list_price_snapshot: dict[str, str] | None
    unpriced: bool
    list_price_id: int | None = None


FREE = Priced(_ZERO, None, _ZERO, None, False)  # no tokens (errors, rejections): costs nothing either way
UNPRICED = Priced(None, None, None, None, True)


def tokens_of(
    input_tokens: int, output_tokens: int, cache_creation: int, cache_5m: int, cache_1h: int, cache_read: int
) -> pricing.TokenCounts:
    """The five priced token types. An upstream that reports only the total cache write
    (no 5 m / 1 h split) wrote at the default 5-minute TTL
    (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching)."""
    return pricing.TokenCounts(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_5m_tokens=cache_5m or max(cache_creation - cache_1h, 0),
        cache_write_1h_tokens=cache_1h,
        cache_read_tokens=cache_read,
    )


# A snapshot is the same dict for every row priced by one price row: built once, shared,
# and named by an id derived from its content (the same on every instance).
_snapshots: dict[pricing.Price, tuple[int, dict[str, str]]] = {}
_by_id: dict[int, dict[str, str]] = {}


def snapshot_id(snap: dict[str, str]) -> int:
    """A 63-bit id of the snapshot's content: blake2b of its canonical JSON."""
    digest = hashlib.blake2b(orjson.dumps(snap, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # non-negative, fits a bigint


def _snapshot(price: pricing.Price) -> tuple[int, dict[str, str]]:
    held = _snapshots.get(price)
    if held is None:
        if len(_snapshots) > 4096:  # price rows are few; a bound all the same
            _snapshots.clear()
        snap = pricing.snapshot(price)
        held = _snapshots[price] = (snapshot_id(snap), snap)
        _by_id[held[0]] = snap
    return held


async def store_snapshots(conn: asyncpg.Connection, ids: set[int]) -> None:
    """Make sure the snapshots `ids` name are in price_snapshots (in the caller's
    transaction). Ids this process never built (a journal replayed after a restart) were
    stored by the process that priced them, or by `register_book`."""
    known = [i for i in ids if i in _by_id]
    if known:
        await conn.execute(db.q("insert-price-snapshots"), known, [_by_id[i] for i in known])


async def register_book(database: db.Database, book: pricing.PriceBook) -> None:
    """Store the snapshot of every list price in `book` (a handful of rows), so a row
    priced with it can always be read back, even from a journal replayed after a crash."""
    ids = {_snapshot(p)[0] for p in book.rows if p.provider == PLAN_LIST_PROVIDER}
    async with database.acquire() as conn, conn.transaction():
        await store_snapshots(conn, ids)


_rated: dict[pricing.Rate, tuple[int, dict[str, str]]] = {}


def _rate_snapshot(rate: pricing.Rate) -> tuple[int, dict[str, str]]:
    # Keyed by the Rate object (an identity hash) rather than the Price (a hash of nine
    # fields, Decimals included): this runs for every priced request.
    held = _rated.get(rate)
    if held is None:
        if len(_rated) > 4096:
            _rated.clear()
        held = _rated[rate] = _snapshot(rate.price)
    return held


def price(
    book: pricing.PriceBook,
    provider: str,
    model_id: str | None,
    region: str | None,
    at: dt.datetime,
    tokens: pricing.TokenCounts,
) -> Priced:
    """Both costs of one row. `provider` is the row's (plan, bedrock or none)."""
    if not (
        tokens.input_tokens
        or tokens.output_tokens
        or tokens.cache_write_5m_tokens
        or tokens.cache_write_1h_tokens
        or tokens.cache_read_tokens
    ):
        return FREE
    if provider == "bedrock":
        rate = book.rate(model_id, region or pricing.ANY_REGION, at, pricing.BEDROCK) if model_id else None
        if rate is None:
            return UNPRICED
        total = pricing.usd(pricing.cost_micros(tokens, rate))
        snap = _rate_snapshot(rate)[1]
        return Priced(total, snap, total, snap, False)
    if provider == "plan":
        rate = book.rate(model_id, pricing.ANY_REGION, at, PLAN_LIST_PROVIDER) if model_id else None
        if rate is None:
            return UNPRICED
        list_id, snap = _rate_snapshot(rate)
        return Priced(_ZERO, None, pricing.usd(pricing.cost_micros(tokens, rate)), snap, False, list_id)
    return FREE  # provider none: never reached an upstream


# --- services for the CLI and the admin API -----------------------------------------------


class UnpricedRow(msgspec.Struct, frozen=True):
    request_id: str
    created_at: dt.datetime
    user: str
    provider: str
    model: str | None
    upstream_model: str | None
    region: str | None
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


class RepriceResult(msgspec.Struct, frozen=True):
    repriced: int  # rows that found a price and were priced now
    still_unpriced: int  # rows whose model still has no price


def _priced_model(row: Any) -> str | None:
    # The model that served the request; the requested name when the upstream said none.
    model: str | None = row["upstream_model"] or row["model"]
    return model


async def _unpriced_pages(database: db.Database, page: int) -> Any:
    after_at: dt.datetime | None = None
    after_id: uuid.UUID | None = None
    while True:
        rows = await database.fetch("list-unpriced-usage", page, after_at, after_id)
        if not rows:
            return
        yield rows
        after_at, after_id = rows[-1]["created_at"], rows[-1]["request_id"]
        if len(rows) < page:
            return


async def list_unpriced(database: db.Database, limit: int = 1000) -> list[UnpricedRow]:
    """Usage rows stored without a price, oldest first (`ccproxy pricing unpriced`)."""
    rows = await database.fetch("list-unpriced-usage", limit, None, None)
    return [
        UnpricedRow(
            request_id=str(r["request_id"]),
            created_at=r["created_at"],
            user=r["user"],
            provider=r["provider"],
            model=r["model"],
            upstream_model=r["upstream_model"],
            region=r["region"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cache_creation_input_tokens=r["cache_creation_input_tokens"],
            cache_read_input_tokens=r["cache_read_input_tokens"],
        )
        for r in rows
    ]


async def reprice(database: db.Database, book: pricing.PriceBook, report_tz: str, page: int = 1000) -> RepriceResult:
    """Price exactly the unpriced rows whose model now has a price (at the price in force
    when each request was made), with their snapshots, and add the costs to the rollups."""
    repriced = 0
    still = 0
    async for rows in _unpriced_pages(database, page):
        ids: list[uuid.UUID] = []
        costs: list[Decimal | None] = []
        snaps: list[dict[str, str] | None] = []
        list_costs: list[Decimal | None] = []
        list_ids: list[int | None] = []
        for r in rows:
            tokens = tokens_of(
                r["input_tokens"],
                r["output_tokens"],
                r["cache_creation_input_tokens"],
                r["cache_creation_5m_tokens"],
                r["cache_creation_1h_tokens"],
                r["cache_read_input_tokens"],
            )
            priced = price(book, r["provider"], _priced_model(r), r["region"], r["created_at"], tokens)
            if priced.unpriced:
                still += 1
                continue
            ids.append(r["request_id"])
            costs.append(priced.cost_usd)
            snaps.append(priced.price_snapshot)
            list_costs.append(priced.list_cost_usd)
            list_ids.append(priced.list_price_id)
        if ids:
            used = {i for i in list_ids if i is not None}
            async with database.acquire() as conn, conn.transaction():
                await store_snapshots(conn, used)
                repriced += int(
                    await conn.fetchval(db.q("reprice-usage"), ids, costs, snaps, list_costs, list_ids, report_tz)
                )
    return RepriceResult(repriced=repriced, still_unpriced=still)
